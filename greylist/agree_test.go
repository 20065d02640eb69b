package greylist_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// The same random sequence of decisions on the four stores (PostgreSQL
// and SQLite, each alone and batched), with Peek
// before each, gives the same verdicts, first-seen times and delays: the
// conformance suite's cases each check one rule; this mixes them (IPv4,
// IPv6 and mapped clients, SPF keys, the null sender, BATV, the
// auto-whitelists, expiry by retry window and max age).
func TestStoresAgreeOnRandomDecisions(t *testing.T) {
	for _, pair := range []bool{false, true} {
		cfg := greylist.DefaultConfig()
		cfg.Delay, cfg.RetryWindow, cfg.MaxAge = 2*time.Minute, 10*time.Minute, 24*time.Hour
		cfg.AWLClientPasses, cfg.AWLCountInterval, cfg.AWLPair = 4, 0, pair
		storesAgree(t, cfg)
	}
}

func storesAgree(t *testing.T, cfg greylist.Config) {
	ctx := dbtest.Context(t)
	pg, lite := dbtest.Open(t, db.Postgres), dbtest.Open(t, db.SQLite)
	pg2, lite2 := dbtest.Open(t, db.Postgres), dbtest.Open(t, db.SQLite)
	pgb, stop1 := greylist.NewBatchStore(pg2, greylist.BatchOptions{})
	defer stop1()
	ltb, stop2 := greylist.NewBatchStore(lite2, greylist.BatchOptions{})
	defer stop2()
	stores := []greylist.Store{greylist.NewStore(pg), greylist.NewStore(lite), pgb, ltb}
	names := []string{"pg", "sqlite", "pg-batch", "sqlite-batch"}
	r := rand.New(rand.NewPCG(3, 4))
	clients := []string{"192.0.2.1", "192.0.2.200", "198.51.100.7", "2001:db8::1", "2001:db8::ffff:1", "::ffff:192.0.2.9"}
	senders := []string{"a@x.test", "b@x.test", "", "c@y.test", "prvs=1234567890=a@x.test"}
	rcpts := []string{"r1@z.test", "r2@z.test"}
	spfs := []string{"", "", "x.test"}
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 600; i++ {
		now = now.Add(time.Duration(r.IntN(200)) * time.Second / 2)
		if r.IntN(50) == 0 {
			now = now.Add(time.Duration(r.IntN(30)) * time.Hour)
		}
		k := cfg.KeyFor(netip.MustParseAddr(clients[r.IntN(len(clients))]), senders[r.IntN(len(senders))],
			rcpts[r.IntN(len(rcpts))], spfs[r.IntN(len(spfs))])
		var first greylist.Outcome
		for j, s := range stores {
			p, err := s.(greylist.Peeker).Peek(ctx, now, &cfg, k)
			if err != nil {
				t.Fatal(err)
			}
			o, err := s.Decide(ctx, now, &cfg, k)
			if err != nil {
				t.Fatal(err)
			}
			if p.Verdict != o.Verdict {
				t.Errorf("step %d %s %v: peek %v, decide %v", i, names[j], k.ClientKey+" "+k.Sender+" "+k.Recipient, p.Verdict, o.Verdict)
			}
			if j == 0 {
				first = o
				continue
			}
			if o.Verdict != first.Verdict || !o.FirstSeen.Equal(first.FirstSeen) || o.Delay != first.Delay {
				t.Fatalf("step %d %s: %+v, pg %+v", i, names[j], o, first)
			}
		}
	}
}
