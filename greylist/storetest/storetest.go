// Package storetest is the conformance suite every greylist.Store passes:
// the same cases, including the concurrent ones, run against PostgreSQL and
// the embedded SQLite store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// Factory prepares a fresh database for one test and opens Stores on it
// (dbtest.NewFactory).
type Factory = dbtest.Factory[greylist.Store]

// Run runs every conformance case.
func Run(t *testing.T, f Factory) {
	dbtest.RunCases(t, f, dbtest.Cases[greylist.Store]{
		{"NewEarlyPassKnown", testNewEarlyPassKnown},
		{"RetryWindowExpiry", testRetryWindowExpiry},
		{"MaxAgeExpiry", testMaxAgeExpiry},
		{"AWLClientCountedHourly", testAWLClient},
		{"AWLClientExpires", testAWLClientExpires},
		{"AWLPair", testAWLPair},
		{"PoolKey", testPoolKey},
		{"ConcurrentNewTriplet", testConcurrentNew},
		{"TwoDaemonsAgree", testTwoDaemons},
		{"GC", testGC},
		{"ConcurrentGC", testConcurrentGC},
	})
	for _, c := range groupCases {
		t.Run(c.name, func(t *testing.T) {
			open := f(t)
			c.fn(t, func(int) greylist.Store { return open() }, func(greylist.Store, greylist.BatchStats) {})
		})
	}
}

// t0 is the injected clock's start; sub-second parts check truncation.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 400_000_000, time.UTC)

// config is the default with the auto-whitelists off, so triplet cases see
// the triplet alone; cases about the AWL turn them on.
func config() *greylist.Config {
	c := greylist.DefaultConfig()
	c.AWLClientPasses = 0
	c.AWLPair = false
	return &c
}

func key(c *greylist.Config, ip, sender, rcpt string) greylist.Key {
	return c.KeyFor(netip.MustParseAddr(ip), sender, rcpt, "")
}

// step is one Decide at an offset from t0 and the verdict it must give.
type step struct {
	at   time.Duration
	k    greylist.Key
	want greylist.Verdict
}

func expect(t *testing.T, s greylist.Store, c *greylist.Config, steps ...step) []greylist.Outcome {
	t.Helper()
	out := make([]greylist.Outcome, len(steps))
	for i, st := range steps {
		// A read-only Peek must predict exactly what Decide then does.
		if p, ok := s.(greylist.Peeker); ok {
			po, err := p.Peek(dbtest.Context(t), t0.Add(st.at), c, st.k)
			if err != nil || po.Verdict != st.want {
				t.Fatalf("step %d (t0+%s %s %s→%s): peek %s, %v; want %s",
					i, st.at, st.k.ClientKey, st.k.Sender, st.k.Recipient, po.Verdict, err, st.want)
			}
		}
		o, err := s.Decide(dbtest.Context(t), t0.Add(st.at), c, st.k)
		if err != nil {
			t.Fatalf("step %d (t0+%s %s): %v", i, st.at, st.k.ClientKey, err)
		}
		if o.Verdict != st.want {
			t.Fatalf("step %d (t0+%s %s %s→%s): verdict %s, want %s",
				i, st.at, st.k.ClientKey, st.k.Sender, st.k.Recipient, o.Verdict, st.want)
		}
		out[i] = o
	}
	return out
}

func testNewEarlyPassKnown(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	k := key(c, "192.0.2.10", "alice@example.org", "bob@example.net")
	other := key(c, "192.0.2.10", "alice@example.org", "carol@example.net")
	out := expect(t, s, c,
		step{0, k, greylist.VerdictNew},
		step{time.Minute, k, greylist.VerdictEarly},
		step{c.Delay - time.Second, k, greylist.VerdictEarly},
		step{c.Delay - time.Second, other, greylist.VerdictNew}, // the recipient is part of the key
		step{c.Delay, k, greylist.VerdictPassed},
		step{c.Delay + time.Second, k, greylist.VerdictKnown},
		step{30 * 24 * time.Hour, k, greylist.VerdictKnown},
	)
	if want := t0.Truncate(time.Second); !out[1].FirstSeen.Equal(want) {
		t.Errorf("early retry FirstSeen %s, want %s", out[1].FirstSeen, want)
	}
	if out[4].Delay != c.Delay || out[5].Delay != c.Delay {
		t.Errorf("pass delays %s, %s; want %s", out[4].Delay, out[5].Delay, c.Delay)
	}
	// Another host of the same /24 is the same client.
	expect(t, s, c, step{31 * 24 * time.Hour, key(c, "192.0.2.99", "alice@example.org", "bob@example.net"), greylist.VerdictKnown})
}

func testRetryWindowExpiry(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	k := key(c, "2001:db8:1:2::25", "news@example.org", "bob@example.net")
	expect(t, s, c,
		step{0, k, greylist.VerdictNew},
		step{c.RetryWindow + time.Second, k, greylist.VerdictNew}, // too late: a new round
		step{c.RetryWindow + c.Delay, k, greylist.VerdictEarly},   // the delay counts from the new round
		step{c.RetryWindow + c.Delay + time.Second, k, greylist.VerdictPassed},
	)
	// The same /64, another interface identifier.
	expect(t, s, c, step{c.RetryWindow + 2*c.Delay, key(c, "2001:db8:1:2::99", "news@example.org", "bob@example.net"), greylist.VerdictKnown})
}

func testMaxAgeExpiry(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	k := key(c, "198.51.100.7", "alice@example.org", "bob@example.net")
	seen := c.Delay + c.MaxAge - time.Hour
	expect(t, s, c,
		step{0, k, greylist.VerdictNew},
		step{c.Delay, k, greylist.VerdictPassed},
		step{seen, k, greylist.VerdictKnown}, // seen again just before expiry: renewed
		step{seen + c.MaxAge, k, greylist.VerdictKnown},
		step{seen + 2*c.MaxAge + time.Second, k, greylist.VerdictNew}, // unseen for max age
		step{seen + 2*c.MaxAge + c.Delay + time.Second, k, greylist.VerdictPassed},
	)
}

func testAWLClient(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	c.AWLClientPasses = 3
	a := key(c, "203.0.113.5", "alice@example.org", "bob@example.net")
	probe := func(n int) greylist.Key { // a new triplet each time
		return key(c, "203.0.113.77", "x@probe"+string(rune('a'+n))+".example", "bob@example.net")
	}
	expect(t, s, c,
		step{0, a, greylist.VerdictNew},
		step{c.Delay, a, greylist.VerdictPassed},                 // pass 1 counted
		step{c.Delay + 10*time.Minute, a, greylist.VerdictKnown}, // within the hour: not counted
		step{c.Delay + 59*time.Minute, a, greylist.VerdictKnown}, // still not
		step{c.Delay + 61*time.Minute, probe(0), greylist.VerdictNew},
		step{c.Delay + 62*time.Minute, a, greylist.VerdictKnown}, // pass 2
		step{c.Delay + 63*time.Minute, probe(1), greylist.VerdictNew},
		step{c.Delay + 125*time.Minute, a, greylist.VerdictKnown}, // pass 3: whitelisted
		step{c.Delay + 126*time.Minute, probe(2), greylist.VerdictAWLClient},
		step{c.Delay + 127*time.Minute, a, greylist.VerdictAWLClient},
	)
	// Another network is not.
	expect(t, s, c, step{c.Delay + 128*time.Minute, key(c, "203.0.114.5", "x@y.example", "bob@example.net"), greylist.VerdictNew})
}

func testAWLClientExpires(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	c.AWLClientPasses = 1
	a := key(c, "203.0.113.5", "alice@example.org", "bob@example.net")
	b := key(c, "203.0.113.6", "carol@example.com", "dave@example.net")
	last := c.Delay + time.Hour
	expect(t, s, c,
		step{0, a, greylist.VerdictNew},
		step{c.Delay, a, greylist.VerdictPassed},
		step{last, b, greylist.VerdictAWLClient}, // refreshes the AWL row
		step{last + c.MaxAge, b, greylist.VerdictAWLClient},
		step{last + 2*c.MaxAge + time.Second, b, greylist.VerdictNew},
	)
}

func testAWLPair(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	c.AWLPair = true
	a := key(c, "192.0.2.10", "alice@example.org", "bob@example.net")
	expect(t, s, c,
		step{0, a, greylist.VerdictNew},
		step{c.Delay, a, greylist.VerdictPassed},
		// Same network and sender domain, other sender and recipient: at once.
		step{c.Delay + time.Minute, key(c, "192.0.2.11", "zed@example.org", "eve@example.net"), greylist.VerdictAWLPair},
		// Another sender domain, or another network, or the null sender: greylisted.
		step{c.Delay + time.Minute, key(c, "192.0.2.10", "alice@example.com", "bob@example.net"), greylist.VerdictNew},
		step{c.Delay + time.Minute, key(c, "192.0.3.10", "alice@example.org", "bob@example.net"), greylist.VerdictNew},
		step{c.Delay + time.Minute, key(c, "192.0.2.10", "", "bob@example.net"), greylist.VerdictNew},
		// The pair expires with max age.
		step{c.Delay + time.Minute + c.MaxAge + time.Second, key(c, "192.0.2.10", "x@example.org", "y@example.net"), greylist.VerdictNew},
	)
}

func testPoolKey(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	first := c.KeyFor(netip.MustParseAddr("40.107.22.1"), "alice@example.org", "bob@example.net", "example.org")
	retry := c.KeyFor(netip.MustParseAddr("52.100.9.33"), "alice@example.org", "bob@example.net", "example.org")
	if first.Kind != greylist.KindSPF || first.ClientKey != "spf:example.org" || first.ClientKey != retry.ClientKey {
		t.Fatalf("pool keys %+v %+v", first, retry)
	}
	expect(t, s, c,
		step{0, first, greylist.VerdictNew},
		step{c.Delay, retry, greylist.VerdictPassed}, // another network of the same SPF domain
	)
	// Without an SPF pass the network keys: a different triplet.
	expect(t, s, c, step{c.Delay, key(c, "52.100.9.33", "alice@example.org", "bob@example.net"), greylist.VerdictNew})
}

// concurrent runs n Decides at once, spread over the stores.
func concurrent(t *testing.T, stores []greylist.Store, c *greylist.Config, n int, at time.Time, k greylist.Key) map[greylist.Verdict]int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count = map[greylist.Verdict]int{}
		start = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(s greylist.Store) {
			defer wg.Done()
			<-start
			o, err := s.Decide(dbtest.Context(t), at, c, k)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			count[o.Verdict]++
			mu.Unlock()
		}(stores[i%len(stores)])
	}
	close(start)
	wg.Wait()
	return count
}

// Fifty requests for one new triplet, from two daemons: exactly one is
// "new", the others are early retries of it.
func testConcurrentNew(t *testing.T, f Factory) {
	open := f(t)
	stores, c := []greylist.Store{open(), open()}, config()
	c.AWLPair, c.AWLClientPasses = true, 5
	k := key(c, "192.0.2.10", "alice@example.org", "bob@example.net")
	got := concurrent(t, stores, c, 50, t0, k)
	if got[greylist.VerdictNew] != 1 || got[greylist.VerdictEarly] != 49 {
		t.Fatalf("50 concurrent first attempts: %v; want 1 new and 49 early", got)
	}
	// After the delay all pass, one of them first; the others see the
	// passed triplet or the pair AWL that pass recorded.
	got = concurrent(t, stores, c, 50, t0.Add(c.Delay), k)
	if got[greylist.VerdictPassed] != 1 || got[greylist.VerdictKnown]+got[greylist.VerdictAWLPair] != 49 {
		t.Fatalf("50 concurrent retries after the delay: %v; want 1 first pass and 49 known or pair", got)
	}
}

func testTwoDaemons(t *testing.T, f Factory) {
	open := f(t)
	a, b, c := open(), open(), config()
	k := key(c, "192.0.2.10", "alice@example.org", "bob@example.net")
	expect(t, a, c, step{0, k, greylist.VerdictNew})
	expect(t, b, c, step{time.Minute, k, greylist.VerdictEarly})
	expect(t, b, c, step{c.Delay, k, greylist.VerdictPassed})
	expect(t, a, c, step{c.Delay + time.Second, k, greylist.VerdictKnown})
}

// gcFixture creates one row of each kind that GC at t0+age must remove,
// and one of each that it must keep, and returns the expected removals.
func gcFixture(t *testing.T, s greylist.Store, c *greylist.Config, n int) (age time.Duration, want greylist.GCStats) {
	t.Helper()
	c.AWLClientPasses, c.AWLPair = 1, true
	age = c.MaxAge + c.Delay + time.Hour
	for i := 0; i < n; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i), 0, 1}).String()
		// Old and passed: its triplet, client and pair expire.
		old := key(c, ip, "alice@example.org", "bob@example.net")
		expect(t, s, c, step{0, old, greylist.VerdictNew}, step{c.Delay, old, greylist.VerdictPassed})
		// Pending since before the retry window (from another network,
		// which the pass above did not whitelist): expires.
		pending := netip.AddrFrom4([4]byte{10, byte(i), 1, 1}).String()
		expect(t, s, c, step{c.Delay, key(c, pending, "old@pending.example", "bob@example.net"), greylist.VerdictNew})
	}
	// Kept: pending inside the window, and a pass seen recently.
	fresh := key(c, "172.16.0.1", "carol@example.com", "dave@example.net")
	expect(t, s, c,
		step{age - c.RetryWindow + time.Minute, key(c, "172.17.0.1", "new@pending.example", "bob@example.net"), greylist.VerdictNew},
		step{age - time.Hour, fresh, greylist.VerdictNew},
		step{age - time.Hour + c.Delay, fresh, greylist.VerdictPassed},
	)
	return age, greylist.GCStats{Pending: int64(n), Passed: int64(n), AWLClients: int64(n), AWLPairs: int64(n)}
}

func testGC(t *testing.T, f Factory) {
	s, c := f(t)(), config()
	c.GCBatch = 3 // several batches per kind
	age, want := gcFixture(t, s, c, 7)
	now := t0.Add(age)
	dry, err := s.GC(dbtest.Context(t), now, c, true)
	if err != nil || dry != want {
		t.Fatalf("dry run: %+v, %v; want %+v", dry, err, want)
	}
	got, err := s.GC(dbtest.Context(t), now, c, false)
	if err != nil || got != want {
		t.Fatalf("gc: %+v, %v; want %+v", got, err, want)
	}
	again, err := s.GC(dbtest.Context(t), now, c, false)
	if err != nil || again.Total() != 0 {
		t.Fatalf("second gc: %+v, %v; want nothing left", again, err)
	}
	// What was kept still works; what was removed starts over.
	expect(t, s, c,
		step{age, key(c, "172.16.0.1", "carol@example.com", "dave@example.net"), greylist.VerdictAWLClient},
		step{age, key(c, "10.0.0.1", "alice@example.org", "bob@example.net"), greylist.VerdictNew},
	)
}

// Two daemons collecting at once remove each row once between them.
func testConcurrentGC(t *testing.T, f Factory) {
	open := f(t)
	a, b, c := open(), open(), config()
	c.GCBatch = 2
	age, want := gcFixture(t, a, c, 10)
	now := t0.Add(age)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		totals greylist.GCStats
	)
	for _, s := range []greylist.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.GC(dbtest.Context(t), now, c, false)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			totals.Pending += st.Pending
			totals.Passed += st.Passed
			totals.AWLClients += st.AWLClients
			totals.AWLPairs += st.AWLPairs
			mu.Unlock()
		}()
	}
	wg.Wait()
	if left, err := a.GC(dbtest.Context(t), now, c, true); err != nil || left.Total() != 0 {
		t.Fatalf("rows left after concurrent gc: %+v, %v", left, err)
	}
	if totals != want {
		t.Fatalf("concurrent gc removed %+v, want %+v", totals, want)
	}
}

// BatchFactory prepares a fresh, migrated database for one test and
// returns a function that opens a batched Store on it whose groups hold
// exactly rows decisions: its window is far longer than any test, so a
// group is sent when it is full, and the cases know which decisions share
// a transaction. The Store reports what it sent with BatchStats.
type BatchFactory func(t *testing.T) (open func(rows int) greylist.Store)

type batchStatser interface{ BatchStats() greylist.BatchStats }

// RunBatch runs the group cases with every group pinned to one
// transaction, and checks that the store sent exactly the transactions
// each case expects. Run runs the same cases on any Store, unpinned.
func RunBatch(t *testing.T, f BatchFactory) {
	t.Run("Pinned", func(t *testing.T) {
		for _, c := range groupCases {
			t.Run(c.name, func(t *testing.T) { c.fn(t, f(t), wantSent(t)) })
		}
	})
}

func wantSent(t *testing.T) func(greylist.Store, greylist.BatchStats) {
	return func(s greylist.Store, want greylist.BatchStats) {
		t.Helper()
		b, ok := s.(batchStatser)
		if !ok {
			t.Fatalf("%T does not report BatchStats", s)
		}
		if got := b.BatchStats(); got != want {
			t.Errorf("sent %+v, want %+v", got, want)
		}
	}
}

// A groupCase makes concurrent decisions that a batched store opened with
// open(rows) sends as one group, and tells sent how many transactions and
// rows that store should have sent so far.
type groupCase func(t *testing.T, open func(rows int) greylist.Store, sent func(greylist.Store, greylist.BatchStats))

var groupCases = []struct {
	name string
	fn   groupCase
}{
	{"GroupDuplicates", testGroupDuplicates},
	{"GroupMixedTriplets", testGroupMix},
	{"GroupStatementError", testGroupStatementError},
	{"GroupCancelledContext", testGroupCancelled},
	{"GroupCommit", testGroupCommit},
}

// call is one Decide of a group and what it returned.
type call struct {
	k   greylist.Key
	at  time.Time
	ctx context.Context // nil: a live one
	o   greylist.Outcome
	err error
}

func triplet(k greylist.Key) string { return k.ClientKey + " " + k.Sender + "→" + k.Recipient }

// group makes all calls at once on s.
func group(t *testing.T, s greylist.Store, c *greylist.Config, calls []call) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range calls {
		cl := &calls[i]
		if cl.ctx == nil {
			cl.ctx = dbtest.Context(t)
		}
		wg.Go(func() {
			<-start
			cl.o, cl.err = s.Decide(cl.ctx, cl.at, c, cl.k)
		})
	}
	close(start)
	wg.Wait()
}

// Duplicates of one triplet in a group resolve as if one came after the
// other: one "new", the rest "early"; with two daemons each sending its
// own group, still one "new" between them.
func testGroupDuplicates(t *testing.T, open func(int) greylist.Store, sent func(greylist.Store, greylist.BatchStats)) {
	const n = 20
	a, b, c := open(n/2), open(n/2), config()
	k := key(c, "192.0.2.10", "alice@example.org", "bob@example.net")
	got := concurrent(t, []greylist.Store{a, b}, c, n, t0, k)
	if got[greylist.VerdictNew] != 1 || got[greylist.VerdictEarly] != n-1 {
		t.Fatalf("%d first attempts in two groups: %v; want 1 new, the rest early", n, got)
	}
	got = concurrent(t, []greylist.Store{a, b}, c, n, t0.Add(c.Delay), k)
	if got[greylist.VerdictPassed] != 1 || got[greylist.VerdictKnown] != n-1 {
		t.Fatalf("%d retries after the delay in two groups: %v; want 1 passed, the rest known", n, got)
	}
	sent(a, greylist.BatchStats{Transactions: 2, Rows: n})
	sent(b, greylist.BatchStats{Transactions: 2, Rows: n})
}

// Different triplets in one group each get their own verdict.
func testGroupMix(t *testing.T, open func(int) greylist.Store, sent func(greylist.Store, greylist.BatchStats)) {
	setup, c := open(1), config()
	pending := key(c, "192.0.2.1", "a@example.org", "x@example.net")
	passed := key(c, "192.0.2.2", "b@example.org", "x@example.net")
	recent := key(c, "192.0.2.3", "c@example.org", "x@example.net")
	fresh := key(c, "192.0.2.4", "d@example.org", "x@example.net")
	now := t0.Add(c.Delay)
	expect(t, setup, c,
		step{-c.Delay, passed, greylist.VerdictNew},
		step{0, passed, greylist.VerdictPassed},
		step{0, pending, greylist.VerdictNew},
		step{c.Delay - time.Minute, recent, greylist.VerdictNew},
	)
	calls := []call{{k: pending}, {k: passed}, {k: recent}, {k: fresh}, {k: fresh}, {k: fresh}}
	others := make([]greylist.Key, 4)
	for i := range others {
		others[i] = key(c, "198.51.100.7", fmt.Sprintf("e%d@example.org", i), "x@example.net")
		calls = append(calls, call{k: others[i]})
	}
	for i := range calls {
		calls[i].at = now
	}
	s := open(len(calls))
	group(t, s, c, calls)
	byTriplet := map[string]map[greylist.Verdict]int{}
	for _, cl := range calls {
		if cl.err != nil {
			t.Fatalf("%s: %v", triplet(cl.k), cl.err)
		}
		if byTriplet[triplet(cl.k)] == nil {
			byTriplet[triplet(cl.k)] = map[greylist.Verdict]int{}
		}
		byTriplet[triplet(cl.k)][cl.o.Verdict]++
	}
	want := map[string]map[greylist.Verdict]int{
		triplet(pending): {greylist.VerdictPassed: 1},
		triplet(passed):  {greylist.VerdictKnown: 1},
		triplet(recent):  {greylist.VerdictEarly: 1},
		triplet(fresh):   {greylist.VerdictNew: 1, greylist.VerdictEarly: 2},
	}
	for _, k := range others {
		want[triplet(k)] = map[greylist.Verdict]int{greylist.VerdictNew: 1}
	}
	if fmt.Sprint(byTriplet) != fmt.Sprint(want) {
		t.Fatalf("verdicts by triplet %v, want %v", byTriplet, want)
	}
	sent(s, greylist.BatchStats{Transactions: 1, Rows: int64(len(calls))})
}

// A decision whose statement fails (a key kind the schema's CHECK
// rejects) gets the error; the others of its group are decided, and the
// next group works. The batched stores drop the failing decision and send
// the rest again: the failed transaction committed nothing.
func testGroupStatementError(t *testing.T, open func(int) greylist.Store, sent func(greylist.Store, greylist.BatchStats)) {
	s, c := open(3), config()
	a := key(c, "192.0.2.1", "a@example.org", "x@example.net")
	b := key(c, "192.0.2.2", "b@example.org", "x@example.net")
	bad := key(c, "192.0.2.3", "c@example.org", "x@example.net")
	bad.Kind = "bogus"
	calls := []call{{k: a, at: t0}, {k: bad, at: t0}, {k: b, at: t0}}
	group(t, s, c, calls)
	if calls[1].err == nil {
		t.Fatalf("decision with key kind %q: %s, want an error", bad.Kind, calls[1].o.Verdict)
	}
	for _, cl := range []call{calls[0], calls[2]} {
		if cl.err != nil || cl.o.Verdict != greylist.VerdictNew {
			t.Fatalf("%s beside a failing decision: %s, %v; want new", cl.k.ClientKey, cl.o.Verdict, cl.err)
		}
	}
	sent(s, greylist.BatchStats{Transactions: 2, Rows: 5})
	next := key(c, "192.0.2.4", "d@example.org", "x@example.net")
	calls = []call{{k: a, at: t0.Add(time.Minute)}, {k: b, at: t0.Add(time.Minute)}, {k: next, at: t0.Add(time.Minute)}}
	group(t, s, c, calls)
	for i, want := range []greylist.Verdict{greylist.VerdictEarly, greylist.VerdictEarly, greylist.VerdictNew} {
		if calls[i].err != nil || calls[i].o.Verdict != want {
			t.Fatalf("next group, %s: %s, %v; want %s", calls[i].k.ClientKey, calls[i].o.Verdict, calls[i].err, want)
		}
	}
	sent(s, greylist.BatchStats{Transactions: 3, Rows: 8})
}

// A request whose context is already cancelled gets its error and writes
// nothing.
func testGroupCancelled(t *testing.T, open func(int) greylist.Store, sent func(greylist.Store, greylist.BatchStats)) {
	s, c := open(2), config()
	k := key(c, "192.0.2.1", "a@example.org", "x@example.net")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o, err := s.Decide(ctx, t0, c, k); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %s, %v; want %v", o.Verdict, err, context.Canceled)
	}
	calls := []call{{k: k, at: t0}, {k: key(c, "192.0.2.2", "b@example.org", "x@example.net"), at: t0}}
	group(t, s, c, calls)
	for _, cl := range calls {
		if cl.err != nil || cl.o.Verdict != greylist.VerdictNew {
			t.Fatalf("%s after a cancelled attempt: %s, %v; want new", cl.k.ClientKey, cl.o.Verdict, cl.err)
		}
	}
	sent(s, greylist.BatchStats{Transactions: 1, Rows: 2})
}

// 64 concurrent new triplets: each is new, and a batched store sends them
// in one transaction.
func testGroupCommit(t *testing.T, open func(int) greylist.Store, sent func(greylist.Store, greylist.BatchStats)) {
	const n = 64
	s, c := open(n), config()
	calls := make([]call, n)
	for i := range calls {
		calls[i] = call{k: key(c, netip.AddrFrom4([4]byte{10, byte(i), 0, 1}).String(), "a@example.org", "x@example.net"), at: t0}
	}
	group(t, s, c, calls)
	for _, cl := range calls {
		if cl.err != nil || cl.o.Verdict != greylist.VerdictNew {
			t.Fatalf("%s: %s, %v; want new", cl.k.ClientKey, cl.o.Verdict, cl.err)
		}
	}
	sent(s, greylist.BatchStats{Transactions: 1, Rows: n})
}
