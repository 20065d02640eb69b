package greylist_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// decideAt records one attempt of (client, sender, rcpt) at t.
func decideAt(t *testing.T, s greylist.Store, cfg greylist.Config, t0 time.Time, client, sender, rcpt string) greylist.Verdict {
	t.Helper()
	k := cfg.KeyFor(netip.MustParseAddr(client), sender, rcpt, "")
	o, err := s.Decide(context.Background(), t0, &cfg, k)
	if err != nil {
		t.Fatal(err)
	}
	return o.Verdict
}

func version(t *testing.T, a *greylist.Admin) int64 {
	t.Helper()
	v, err := a.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAdminListReleaseForget(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		cfg := greylist.DefaultConfig()
		s, a := greylist.NewStore(d), greylist.NewAdmin(d, cfg)
		t0 := time.Now().Truncate(time.Second).Add(-time.Hour)
		decideAt(t, s, cfg, t0, "192.0.2.10", "alice@a.test", "bob@b.test")
		decideAt(t, s, cfg, t0.Add(time.Minute), "198.51.100.7", "carol@c.test", "dan@b.test")
		if v := decideAt(t, s, cfg, t0.Add(time.Minute+cfg.Delay), "198.51.100.7", "carol@c.test", "dan@b.test"); v != greylist.VerdictPassed {
			t.Fatalf("setup: %v, want passed", v)
		}

		for _, tc := range []struct {
			name string
			f    greylist.Filter
			want []string // senders, newest first
			more bool
		}{
			{"all", greylist.Filter{}, []string{"carol@c.test", "alice@a.test"}, false},
			{"pending", greylist.Filter{State: greylist.StatePending}, []string{"alice@a.test"}, false},
			{"passed", greylist.Filter{State: greylist.StatePassed}, []string{"carol@c.test"}, false},
			{"client address", greylist.Filter{Selector: greylist.Selector{Client: "192.0.2.99"}}, []string{"alice@a.test"}, false},
			{"client key", greylist.Filter{Selector: greylist.Selector{Client: "net:198.51.100.0/24"}}, []string{"carol@c.test"}, false},
			{"sender normalized", greylist.Filter{Selector: greylist.Selector{Sender: "Alice+news@A.test"}}, []string{"alice@a.test"}, false},
			{"recipient", greylist.Filter{Selector: greylist.Selector{Recipient: "DAN@b.test"}}, []string{"carol@c.test"}, false},
			{"older", greylist.Filter{OlderThan: t0.Add(30 * time.Second)}, []string{"alice@a.test"}, false},
			{"newer", greylist.Filter{NewerThan: t0.Add(30 * time.Second)}, []string{"carol@c.test"}, false},
			{"limit", greylist.Filter{Limit: 1}, []string{"carol@c.test"}, true},
		} {
			rows, more, err := a.List(ctx, tc.f)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var got []string
			for _, r := range rows {
				got = append(got, r.Sender)
			}
			if len(got) != len(tc.want) || more != tc.more || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Errorf("%s: got %v (more %v), want %v (more %v)", tc.name, got, more, tc.want, tc.more)
			}
		}

		// Bad selectors change nothing.
		v0 := version(t, a)
		for _, sel := range []greylist.Selector{{}, {All: true, Client: "192.0.2.10"}, {Client: "mail.example"},
			{Client: "192.0.2.0/16"}, {Sender: "a\nb@c"}} {
			if _, err := a.Release(ctx, sel, time.Now()); err == nil {
				t.Errorf("release %+v: no error", sel)
			}
			if _, err := a.Forget(ctx, sel); err == nil {
				t.Errorf("forget %+v: no error", sel)
			}
		}
		if _, err := a.Release(ctx, greylist.Selector{}, time.Now()); !errors.Is(err, greylist.ErrNoSelector) {
			t.Errorf("empty selector: %v, want ErrNoSelector", err)
		}
		if version(t, a) != v0 {
			t.Fatal("a refused change bumped the version")
		}

		// Release: the pending triplet's next attempt passes at once.
		now := t0.Add(2 * time.Minute)
		if n, err := a.Release(ctx, greylist.Selector{Client: "192.0.2.10"}, now); err != nil || n != 1 {
			t.Fatalf("release: %d, %v", n, err)
		}
		if version(t, a) == v0 {
			t.Error("release did not bump the version")
		}
		// mxpolicyd check (Peek) predicts it: passed, with the delay up to
		// the release, as the X-Greylist header will say.
		k := cfg.KeyFor(netip.MustParseAddr("192.0.2.10"), "alice@a.test", "bob@b.test", "")
		if p, err := s.(greylist.Peeker).Peek(ctx, now.Add(time.Second), &cfg, k); err != nil ||
			p.Verdict != greylist.VerdictPassed || p.Delay != 2*time.Minute {
			t.Errorf("peek after release: %v (delay %v), %v; want passed (delay 2m)", p.Verdict, p.Delay, err)
		}
		if v := decideAt(t, s, cfg, now.Add(time.Second), "192.0.2.10", "alice@a.test", "bob@b.test"); v != greylist.VerdictPassed {
			t.Errorf("after release: %v, want passed", v)
		}

		// Forget: the passed triplet, its pair and its client's count go,
		// so it is greylisted again.
		r, err := a.Forget(ctx, greylist.Selector{Client: "198.51.100.7", Sender: "carol@c.test"})
		if err != nil || r.Triplets != 1 || r.Pairs != 1 || r.AWLClients != 1 {
			t.Fatalf("forget: %+v, %v", r, err)
		}
		if v := decideAt(t, s, cfg, now.Add(2*time.Second), "198.51.100.7", "carol@c.test", "dan@b.test"); v != greylist.VerdictNew {
			t.Errorf("after forget: %v, want new", v)
		}
		if r, err := a.Forget(ctx, greylist.Selector{All: true}); err != nil || r.Triplets != 2 {
			t.Errorf("forget --all: %+v, %v", r, err)
		}
	})
}

func TestAdminImportIdempotent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		cfg := greylist.DefaultConfig()
		s, a := greylist.NewStore(d), greylist.NewAdmin(d, cfg)
		now := time.Now().Truncate(time.Second)
		nw := netip.MustParsePrefix("203.0.113.0/24")
		addr := netip.MustParseAddr("203.0.113.0")
		set := greylist.ImportSet{
			Triplets: []greylist.ImportTriplet{
				{Net: nw, Addr: addr, Sender: "old@x.test", Recipient: "r@y.test",
					FirstSeen: now.Add(-48 * time.Hour), LastSeen: now.Add(-time.Hour), PassedAt: now.Add(-47 * time.Hour)},
				{Net: nw, Addr: addr, Sender: "new@w.test", Recipient: "r@y.test",
					FirstSeen: now.Add(-30 * time.Second), LastSeen: now.Add(-30 * time.Second)},
			},
			Clients: []greylist.ImportClient{{Net: nw, Addr: addr, Passes: 2, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour)}},
			Pairs:   []greylist.ImportPair{{Net: nw, Addr: addr, SenderDomain: "z.test", FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour)}},
		}
		r, err := a.Import(ctx, set)
		if err != nil || r != (greylist.ImportResult{Triplets: 2, Clients: 1, Pairs: 1}) {
			t.Fatalf("import: %+v, %v", r, err)
		}
		if r, err = a.Import(ctx, set); err != nil || r != (greylist.ImportResult{}) {
			t.Fatalf("second import: %+v, %v; want nothing changed", r, err)
		}
		bad := set
		bad.Triplets = append([]greylist.ImportTriplet{{Net: netip.MustParsePrefix("203.0.0.0/16"), Addr: addr,
			Sender: "a@b", Recipient: "c@d", FirstSeen: now, LastSeen: now}}, set.Triplets...)
		if _, err := a.Import(ctx, bad); err == nil {
			t.Fatal("a /16 network was imported")
		}
		if v := decideAt(t, s, cfg, now, "203.0.113.9", "old@x.test", "r@y.test"); v != greylist.VerdictKnown {
			t.Errorf("imported passed triplet: %v, want known", v)
		}
		if v := decideAt(t, s, cfg, now, "203.0.113.9", "new@w.test", "r@y.test"); v != greylist.VerdictEarly {
			t.Errorf("imported pending triplet before its delay: %v, want early", v)
		}
		if v := decideAt(t, s, cfg, now.Add(cfg.Delay), "203.0.113.9", "new@w.test", "r@y.test"); v != greylist.VerdictPassed {
			t.Errorf("imported pending triplet after its delay: %v, want passed", v)
		}
		if v := decideAt(t, s, cfg, now, "203.0.113.9", "someone@z.test", "q@y.test"); v != greylist.VerdictAWLPair {
			t.Errorf("imported pair: %v, want awl-pair", v)
		}
	})
}

// A forgotten triplet is greylisted again even though the daemon's pass
// cache held it: the change counter empties the cache.
func TestForgetClearsPassCache(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		cfg := greylist.DefaultConfig()
		cfg.AWLPair, cfg.AWLClientPasses = false, 0
		a := greylist.NewAdmin(d, cfg)
		g, err := greylist.New(cfg, greylist.NewStore(d), greylist.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ch := greylist.NewChanges(a, nil)
		ch.Poll(ctx)
		g.FollowChanges(ch)
		req := request("192.0.2.10", "alice@example.org", "bob@example.net")
		check := func(at time.Time) policy.Result {
			st := &policy.State{Req: req, Msg: policy.NewMessage(req.Instance), Now: at}
			res, err := g.Check(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		t0 := time.Now().Add(-time.Hour)
		check(t0)
		if res := check(t0.Add(cfg.Delay)); !res.Action.IsDunno() {
			t.Fatalf("retry after the delay: %+v", res)
		}
		if res := check(time.Now()); res.Reason != "passed before (cached)" {
			t.Fatalf("want a cached pass, got %+v", res)
		}
		if _, err := a.Forget(ctx, greylist.Selector{Client: "192.0.2.10"}); err != nil {
			t.Fatal(err)
		}
		ch.Poll(ctx)
		if res := check(time.Now()); res.Action.Verb != policy.DeferIfPermit {
			t.Fatalf("after forget: %+v, want a deferral", res)
		}
	})
}
