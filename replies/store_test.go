package replies_test

import (
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/replies"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// t0 is the injected clock's start; the sub-second part checks that both
// stores keep whole seconds alike.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 700_000_000, time.UTC)

var (
	alice = replies.Pair{Local: "alice@example.org", Outside: "bob@example.net", OutsideDomain: "example.net"}
	carol = replies.Pair{Local: "alice@example.org", Outside: "carol@example.net", OutsideDomain: "example.net"}
	other = replies.Pair{Local: "alice@example.org", Outside: "dave@example.com", OutsideDomain: "example.com"}
)

// stores are the two ways to open a store; each passes the same tests.
var stores = []struct {
	name string
	open func(*testing.T, *db.DB) replies.Store
}{
	{"plain", func(_ *testing.T, d *db.DB) replies.Store { return replies.NewStore(d) }},
	{"batched", func(t *testing.T, d *db.DB) replies.Store {
		s, stop := replies.NewBatchStore(d)
		t.Cleanup(stop)
		return s
	}},
}

// eachStore runs f on every dialect, plain and batched.
func eachStore(t *testing.T, f func(t *testing.T, s replies.Store)) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, d *db.DB) { f(t, st.open(t, d)) })
		})
	}
}

// TestStore is the conformance suite: both dialects, plain and batched,
// record, match, expire and collect alike.
func TestStore(t *testing.T) {
	eachStore(t, func(t *testing.T, s replies.Store) {
		ctx := dbtest.Context(t)
		match := func(since time.Time, p replies.Pair, byDomain bool) bool {
			t.Helper()
			hit, err := s.Match(ctx, since, p, byDomain)
			if err != nil {
				t.Fatal(err)
			}
			return hit
		}
		if match(t0.Add(-time.Hour), alice, false) {
			t.Fatal("matched before anything was recorded")
		}
		if err := s.Record(ctx, t0, alice); err != nil {
			t.Fatal(err)
		}
		if !match(t0, alice, false) {
			t.Error("recorded pair not matched at its own second")
		}
		if match(t0, carol, false) {
			t.Error("another address of the domain matched in address mode")
		}
		if !match(t0, carol, true) {
			t.Error("another address of the domain not matched in domain mode")
		}
		if match(t0, other, true) {
			t.Error("another domain matched in domain mode")
		}
		if match(t0.Add(time.Second), alice, false) {
			t.Error("pair last seen before since matched")
		}
		// Recording again moves last_seen; an older clock never moves it back.
		later := t0.Add(48 * time.Hour)
		for _, at := range []time.Time{later, t0} {
			if err := s.Record(ctx, at, alice); err != nil {
				t.Fatal(err)
			}
		}
		if !match(later, alice, false) {
			t.Error("recording again did not refresh the pair")
		}
	})
}

func TestStoreGC(t *testing.T) {
	eachStore(t, func(t *testing.T, s replies.Store) {
		ctx := dbtest.Context(t)
		for i, p := range []replies.Pair{alice, carol, other} {
			if err := s.Record(ctx, t0.Add(time.Duration(i)*time.Hour), p); err != nil {
				t.Fatal(err)
			}
		}
		cutoff := t0.Add(90 * time.Minute) // alice and carol are older
		if n, err := s.GC(ctx, cutoff, 1, true); err != nil || n != 2 {
			t.Fatalf("dry run: %d, %v; want 2", n, err)
		}
		if n, err := s.GC(ctx, cutoff, 1, false); err != nil || n != 2 {
			t.Fatalf("gc in batches of 1: %d, %v; want 2", n, err)
		}
		if hit, err := s.Match(ctx, t0.Add(-time.Hour), alice, false); err != nil || hit {
			t.Errorf("collected pair: Match = %v, %v; want false", hit, err)
		}
		if hit, err := s.Match(ctx, cutoff, other, false); err != nil || !hit {
			t.Errorf("fresh pair: Match = %v, %v; want true", hit, err)
		}
	})
}

// gc at an instant with a fraction of a second keeps a pair that Match at
// the same instant still honours: both count whole seconds.
func TestStoreGCAgreesWithMatch(t *testing.T) {
	eachStore(t, func(t *testing.T, s replies.Store) {
		ctx := dbtest.Context(t)
		seen := t0.Truncate(time.Second)
		if err := s.Record(ctx, seen, alice); err != nil {
			t.Fatal(err)
		}
		since := seen.Add(500 * time.Millisecond) // now - max_age, mid-second
		if hit, err := s.Match(ctx, since, alice, false); err != nil || !hit {
			t.Fatalf("Match = %v, %v; want the pair live", hit, err)
		}
		if n, err := s.GC(ctx, since, 10, false); err != nil || n != 0 {
			t.Errorf("gc deleted %d pairs (%v) that Match at the same instant honours", n, err)
		}
	})
}

// TestStoreConcurrentRecord: many sends of one pair at once, as from
// several hosts, all succeed and leave one row.
func TestStoreConcurrentRecord(t *testing.T) {
	eachStore(t, func(t *testing.T, s replies.Store) {
		ctx := dbtest.Context(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Record(ctx, t0.Add(time.Duration(i%4)*time.Second), alice)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.GC(ctx, t0.Add(time.Hour), 100, true); err != nil || n != 1 {
			t.Errorf("rows after concurrent records: %d, %v; want 1", n, err)
		}
	})
}

// TestStoreBatchedMatches: concurrent lookups of recorded and unrecorded
// pairs, in both modes, as the batched store sends them together, each
// get their own answer; a value the database cannot hold is no match.
func TestStoreBatchedMatches(t *testing.T) {
	eachStore(t, func(t *testing.T, s replies.Store) {
		ctx := dbtest.Context(t)
		if err := s.Record(ctx, t0, alice); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			p        replies.Pair
			byDomain bool
			want     bool
		}{
			{alice, false, true}, {carol, false, false}, {carol, true, true}, {other, true, false},
			{replies.Pair{Local: "alice@example.org", Outside: "b\xffad@example.net", OutsideDomain: "example.net"}, false, false},
			{replies.Pair{Local: "al\x00ice@example.org", Outside: "bob@example.net", OutsideDomain: "example.net"}, false, false},
		}
		var wg sync.WaitGroup
		for range 8 {
			for _, c := range cases {
				wg.Go(func() {
					if hit, err := s.Match(ctx, t0, c.p, c.byDomain); err != nil || hit != c.want {
						t.Errorf("%+v by domain %v: %v, %v; want %v", c.p, c.byDomain, hit, err, c.want)
					}
				})
			}
		}
		wg.Wait()
	})
}
