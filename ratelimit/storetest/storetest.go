// Package storetest is the conformance suite every ratelimit.Store passes:
// the same cases, the concurrent ones included, run against PostgreSQL and
// the embedded SQLite store.
package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
)

// Factory prepares a fresh database for one test and opens Stores on it
// (dbtest.NewFactory).
type Factory = dbtest.Factory[ratelimit.Store]

// Run runs every conformance case.
func Run(t *testing.T, f Factory) {
	dbtest.RunCases(t, f, dbtest.Cases[ratelimit.Store]{
		{"BurstSteadyRecovery", testBurstSteadyRecovery},
		{"RefusedCostsNothing", testRefusedCostsNothing},
		{"CellsAreIndependent", testCellsIndependent},
		{"TooBigNeverConforms", testTooBig},
		{"ConcurrentExactlyLimit", testConcurrent},
		{"TwoDaemonsShareLimit", testTwoDaemons},
		{"Networks", testNetworks},
		{"CountersResetGC", testCountersResetGC},
	})
}

// t0 is the injected clock's start.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 400_000_000, time.UTC)

// cell is one message under a rule of one per second with a burst of
// burst.
func cell(rule, key string, burst int64) ratelimit.Cell {
	return ratelimit.Cell{Rule: rule, Key: key, Inc: int64(time.Second), Tau: burst * int64(time.Second)}
}

func take(t *testing.T, s ratelimit.Store, at time.Duration, cells ...ratelimit.Cell) []bool {
	t.Helper()
	ok, err := s.Take(dbtest.Context(t), t0.Add(at), cells)
	if err != nil {
		t.Fatalf("take at t0+%s: %v", at, err)
	}
	if len(ok) != len(cells) {
		t.Fatalf("take at t0+%s: %d answers for %d cells", at, len(ok), len(cells))
	}
	return ok
}

// expect takes c once per want, all at at, and checks each answer.
func expect(t *testing.T, s ratelimit.Store, at time.Duration, c ratelimit.Cell, want ...bool) {
	t.Helper()
	for i, w := range want {
		if got := take(t, s, at, c)[0]; got != w {
			t.Fatalf("t0+%s request %d on %s/%s: allowed %v, want %v", at, i+1, c.Rule, c.Key, got, w)
		}
	}
}

// A burst passes at once, then one per emission interval, and rest
// brings the whole burst back.
func testBurstSteadyRecovery(t *testing.T, f Factory) {
	s := f(t)()
	c := cell("r", "alice", 3)
	expect(t, s, 0, c, true, true, true, false)
	expect(t, s, 500*time.Millisecond, c, false)
	expect(t, s, time.Second, c, true, false) // one interval: one more
	for i := 2; i <= 5; i++ {
		expect(t, s, time.Duration(i)*time.Second, c, true, false) // the steady rate
	}
	expect(t, s, 8*time.Second, c, true, true, true, false) // 3 s of rest: the burst is back
	expect(t, s, time.Hour, c, true, true, true, false)
}

// A refused request does not move the key's TAT, so a client that keeps
// retrying is let through as soon as the rate allows.
func testRefusedCostsNothing(t *testing.T, f Factory) {
	s := f(t)()
	c := cell("r", "bob", 1)
	expect(t, s, 0, c, true)
	for i := 1; i < 10; i++ {
		expect(t, s, time.Duration(i)*90*time.Millisecond, c, false)
	}
	expect(t, s, time.Second, c, true)
}

// Cells of one decision are decided each on its own, and keys and rules
// do not share counters.
func testCellsIndependent(t *testing.T, f Factory) {
	s := f(t)()
	a, b, other := cell("r", "a", 1), cell("r", "b", 2), cell("s", "a", 1)
	if got := take(t, s, 0, a, b, other); !got[0] || !got[1] || !got[2] {
		t.Fatalf("first take %v, want all allowed", got)
	}
	if got := take(t, s, 0, a, b, other); got[0] || !got[1] || got[2] {
		t.Fatalf("second take %v, want [false true false]", got)
	}
}

// A cost beyond the burst (a message bigger than a bytes rule's burst)
// never conforms, even at rest, and leaves no row.
func testTooBig(t *testing.T, f Factory) {
	s := f(t)()
	big := ratelimit.Cell{Rule: "bytes", Key: "k", Inc: 11, Tau: 10}
	expect(t, s, 0, big, false, false)
	cs, err := s.Counters(dbtest.Context(t), t0)
	if err != nil || len(cs) != 0 {
		t.Fatalf("counters %v, %v; want none", cs, err)
	}
	expect(t, s, 0, ratelimit.Cell{Rule: "bytes", Key: "k", Inc: 10, Tau: 10}, true, false)
}

// N concurrent decisions on one key at one instant: exactly the burst
// passes, however the requests interleave.
func testConcurrent(t *testing.T, f Factory) {
	open := f(t)
	stores := []ratelimit.Store{open()}
	concurrent(t, stores, 40, 7)
}

// Two daemons on one database enforce one limit between them.
func testTwoDaemons(t *testing.T, f Factory) {
	open := f(t)
	concurrent(t, []ratelimit.Store{open(), open()}, 40, 9)
}

func concurrent(t *testing.T, stores []ratelimit.Store, n int, limit int64) {
	t.Helper()
	c := cell("r", "shared", limit)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ok, err := stores[i%len(stores)].Take(dbtest.Context(t), t0, []ratelimit.Cell{c})
			if err != nil {
				errs <- err
				return
			}
			if ok[0] {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != limit {
		t.Fatalf("%d concurrent requests, limit %d: %d allowed", n, limit, got)
	}
}

// SeeNetwork counts distinct networks within the window, this one
// included; a network seen again is not counted twice, and one last seen
// longer than the window ago no longer counts.
func testNetworks(t *testing.T, f Factory) {
	s := f(t)()
	w := time.Hour
	see := func(at time.Duration, key, nw string, want int) {
		t.Helper()
		n, err := s.SeeNetwork(dbtest.Context(t), t0.Add(at), w, "nets", key, nw)
		if err != nil || n != want {
			t.Fatalf("t0+%s %s from %s: %d networks, %v; want %d", at, key, nw, n, err, want)
		}
	}
	see(0, "alice", "192.0.2.0/24", 1)
	see(time.Minute, "alice", "192.0.2.0/24", 1)
	see(2*time.Minute, "alice", "198.51.100.0/24", 2)
	see(3*time.Minute, "bob", "203.0.113.0/24", 1)
	see(4*time.Minute, "alice", "2001:db8::/64", 3)
	// The first network was last seen at t0+1m: gone after t0+1m+1h.
	see(w+90*time.Second, "alice", "2001:db8::/64", 2)
	see(2*w+time.Hour, "alice", "192.0.2.0/24", 1)
}

// Counters shows what limits something now; Reset clears one key of one
// rule only; GC removes what limits nothing any more.
func testCountersResetGC(t *testing.T, f Factory) {
	s := f(t)()
	ctx := dbtest.Context(t)
	take(t, s, 0, cell("r", "a", 5), cell("r", "b", 5))
	if _, err := s.SeeNetwork(ctx, t0, time.Hour, "nets", "a", "192.0.2.0/24"); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Counters(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(summary(cs))
	if want := "[nets/a/192.0.2.0/24 r/a/1s r/b/1s]"; got != want {
		t.Fatalf("counters %s, want %s", got, want)
	}
	if n, err := s.Reset(ctx, "r", "a"); err != nil || n != 1 {
		t.Fatalf("reset r/a: %d, %v; want 1 row", n, err)
	}
	if n, err := s.Reset(ctx, "r", "nobody"); err != nil || n != 0 {
		t.Fatalf("reset r/nobody: %d, %v; want 0 rows", n, err)
	}
	expect(t, s, 0, cell("r", "a", 1), true) // a fresh start after reset
	// At t0+30m the cells are at rest, the network still counts.
	st, err := s.GC(ctx, t0.Add(30*time.Minute), 1, true)
	if err != nil || st.Cells != 2 || st.Networks != 0 {
		t.Fatalf("dry gc at 30m: %+v, %v; want 2 cells, 0 networks", st, err)
	}
	st, err = s.GC(ctx, t0.Add(2*time.Hour), 1, false)
	if err != nil || st.Cells != 2 || st.Networks != 1 {
		t.Fatalf("gc at 2h: %+v, %v; want 2 cells, 1 network", st, err)
	}
	if cs, err := s.Counters(ctx, t0); err != nil || len(cs) != 0 {
		t.Fatalf("counters after gc: %v, %v; want none", cs, err)
	}
}

func summary(cs []ratelimit.Counter) []string {
	var out []string
	for _, c := range cs {
		if c.Network != "" {
			out = append(out, c.Rule+"/"+c.Key+"/"+c.Network)
			continue
		}
		out = append(out, fmt.Sprintf("%s/%s/%s", c.Rule, c.Key, c.TAT.Sub(t0)))
	}
	return out
}
