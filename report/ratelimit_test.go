package report

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// A rule's decisions land in report_ratelimit under the rule's name, a
// HOLD included (migration 0004 lets the verb column hold it).
func TestRateLimitView(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		day := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		var rows []decisionlog.Row
		for i, c := range []struct {
			a      policy.Action
			reason string
		}{
			{policy.Action{Verb: policy.DeferIfPermit, Text: "4.7.1 per-user: a sends too fast"}, "per-user: over its limit"},
			{policy.Action{Verb: policy.DeferIfPermit, Text: "4.7.1 per-user: a sends too fast"}, "per-user: over its limit"},
			{policy.Action{Verb: policy.Hold, Text: "nets: a seen from too many networks"}, "nets: too many networks"},
			{policy.DunnoAction, "within rate limits"},
		} {
			req := &policy.Request{ClientAddress: netip.MustParseAddr("192.0.2.1"), Sender: "a@example.org"}
			rows = append(rows, decisionlog.FromDecision(&policy.Decision{Time: day.Add(time.Duration(i) * time.Second),
				Req: req, Check: "ratelimit", Action: c.a, Reason: c.reason}, "mx1"))
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		got, err := RateLimit(ctx, d, day.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []RateLimitRow{
			{Day: "2026-03-01", Rule: "nets", Kind: "distinct_networks", Hits: 1, Held: 1, Clients: 1, Senders: 1},
			{Day: "2026-03-01", Rule: "per-user", Kind: "rate", Hits: 2, Deferred: 2, Clients: 1, Senders: 1},
		}
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("report_ratelimit:\n got %+v\nwant %+v", got, want)
		}
	})
}

// A rate-limit hit without a client address (PostgreSQL stores NULL,
// SQLite ”) counts as no client on either store.
func TestRateLimitClientsWithoutAddress(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		day := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		var rows []decisionlog.Row
		for i, addr := range []string{"192.0.2.1", ""} {
			req := &policy.Request{Sender: "a@example.org"}
			if addr != "" {
				req.ClientAddress = netip.MustParseAddr(addr)
			}
			rows = append(rows, decisionlog.FromDecision(&policy.Decision{Time: day.Add(time.Duration(i) * time.Second),
				Req: req, Check: "ratelimit", Action: policy.Action{Verb: policy.DeferIfPermit, Text: "4.7.1 slow down"},
				Reason: "per-user: over its limit"}, "mx1"))
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		rl, err := RateLimit(ctx, d, day.Add(-time.Hour))
		if err != nil || len(rl) != 1 || rl[0].Hits != 2 || rl[0].Clients != 1 {
			t.Fatalf("report_ratelimit: %+v, %v; want 2 hits from 1 client", rl, err)
		}
	})
}
