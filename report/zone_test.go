package report

import (
	"bytes"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// A link-local client address with a zone (policy.parseAddr keeps it;
// decisionlog's own TestCopyMatchesPgx stores "fe80::1%eth0") is logged
// without its zone on PostgreSQL (inet cannot hold one: pgcopy.go) and
// with it on SQLite, so the same decisions give different reports:
// docs/reporting.md, "Both stores have the same views, with the same
// columns", and report_ratelimit's distinct `clients` "on both stores".
func TestZonedClientSameOnBothStores(t *testing.T) {
	never := map[string]string{}
	clients := map[string]int64{}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		rows := []decisionlog.Row{
			dec{time: "2026-11-01 10:00", client: "fe80::1%eth0", sender: "a@example.net", rcpt: "u@example.org",
				check: "greylist", action: greylisted}.row(t),
		}
		for i, c := range []string{"fe80::1%eth0", "fe80::1%eth1"} {
			r := dec{time: "2026-11-01 11:00", client: c, sender: "a@example.net", rcpt: "u@example.org",
				check: "ratelimit", action: "DEFER_IF_PERMIT 4.7.1 slow down"}.row(t)
			r.Time = r.Time.Add(time.Duration(i) * time.Second)
			r.Reason = "per-user: over its limit"
			rows = append(rows, r)
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Run(ctx, d, Options{Report: ReportNeverRetried, Format: FormatCSV}, &buf); err != nil {
			t.Fatal(err)
		}
		never[d.Kind()] = buf.String()
		rl, err := RateLimit(ctx, d, time.Time{})
		if err != nil || len(rl) != 1 {
			t.Fatalf("report_ratelimit: %+v, %v", rl, err)
		}
		clients[d.Kind()] = rl[0].Clients
	})
	if never[db.SQLite] != never[db.Postgres] {
		t.Errorf("never-retried differs:\nsqlite   %q\npostgres %q", never[db.SQLite], never[db.Postgres])
	}
	if clients[db.SQLite] != clients[db.Postgres] {
		t.Errorf("report_ratelimit clients: sqlite %d, postgres %d", clients[db.SQLite], clients[db.Postgres])
	}
}
