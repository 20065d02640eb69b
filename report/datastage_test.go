package report

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// With greylist.stage: data, a message with a new triplet after a known
// one is accepted at RCPT and deferred whole at DATA (greylist.Checker
// answer and CheckMessage). Postfix gives the recipient at DATA only when
// one was accepted (Postfix SMTPD_POLICY_README, "recipient"), so the
// DATA row of a two-recipient message names none: report_never_retried
// takes its recipients from the message's RCPT rows (host, instance).
func TestNeverRetriedListsMessagesDeferredAtData(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		const client, sender = "192.0.2.10", "a@example.net"
		row := func(when, instance, rcpt, check, action string) decisionlog.Row {
			r := dec{time: when, client: client, sender: sender, rcpt: rcpt, check: check, action: action}.row(t)
			r.Instance = instance
			return r
		}
		rows := []decisionlog.Row{
			// Message 1: never retried.
			row("2026-11-01 10:00", "1a.1", "known@example.org", "", "DUNNO"),
			row("2026-11-01 10:00", "1a.1", "new@example.org", "", "DUNNO"),
			row("2026-11-01 10:01", "1a.1", "", "greylist", greylisted),
			// Message 2, from the same client: deferred at DATA, retried
			// 10 minutes later and accepted (RCPT rows that pass, and a
			// DATA row that passes).
			row("2026-11-01 11:00", "2b.1", "x@example.org", "", "DUNNO"),
			row("2026-11-01 11:00", "2b.1", "y@example.org", "", "DUNNO"),
			row("2026-11-01 11:00", "2b.1", "", "greylist", greylisted),
			row("2026-11-01 11:10", "2b.2", "x@example.org", "", "DUNNO"),
			row("2026-11-01 11:10", "2b.2", "y@example.org", "", "DUNNO"),
			row("2026-11-01 11:10", "2b.2", "", "", "DUNNO"),
			// A DATA deferral whose RCPT rows are more than an hour
			// older belongs to no message here: nothing to list.
			row("2026-11-01 12:00", "3c.1", "old@example.org", "", "DUNNO"),
			row("2026-11-01 13:30", "3c.1", "", "greylist", greylisted),
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		never, err := NeverRetried(ctx, d, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]NeverRetriedRow{}
		for _, n := range never {
			got[n.Recipient] = n
		}
		if len(never) != 2 || got["known@example.org"].Deferrals != 1 || got["new@example.org"].Deferrals != 1 {
			t.Fatalf("report_never_retried = %+v; want message 1's two recipients, deferred once", never)
		}
		n := got["new@example.org"]
		if n.Client != client || n.Sender != sender || !n.LastDeferred.Equal(at("2026-11-01 10:01")) {
			t.Errorf("row = %+v; want client %s, sender %s, deferred at the DATA row's time", n, client, sender)
		}
	})
}
