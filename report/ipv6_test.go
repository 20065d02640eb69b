package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// neverRetriedCSV records decs on each store and returns the
// never-retried report each prints.
func neverRetriedCSV(t *testing.T, decs []dec) map[string]string {
	out := map[string]string{}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		rows := make([]decisionlog.Row, len(decs))
		for i, x := range decs {
			rows[i] = x.row(t)
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Run(ctx, d, Options{Format: FormatCSV, Report: ReportNeverRetried, Since: at("2026-11-01 00:00")}, &buf); err != nil {
			t.Fatal(err)
		}
		out[d.Kind()] = buf.String()
	})
	return out
}

// "Both stores print the same reports, byte for byte" (TestRunFormats),
// with an IPv6 client too. Two triplets deferred in the same second are
// ordered by client: an inet on PostgreSQL (every IPv4 address before
// every IPv6 one), text on SQLite ("2001:db8::1" < "203.0.113.9"), so
// the stores print them in another order (and --limit keeps another row).
func TestNeverRetriedIPv6OrderSameOnBothStores(t *testing.T) {
	out := neverRetriedCSV(t, []dec{
		{time: "2026-11-01 08:00", client: "203.0.113.9", sender: "a@example.biz", rcpt: "v@example.org", check: "greylist", action: greylisted},
		{time: "2026-11-01 08:00", client: "2001:db8::1", sender: "b@example.biz", rcpt: "v@example.org", check: "greylist", action: greylisted},
	})
	if out[db.SQLite] != out[db.Postgres] {
		t.Errorf("never-retried csv differs:\nsqlite:\n%s\npostgres:\n%s", out[db.SQLite], out[db.Postgres])
	}
}

// An IPv4-compatible client (::/96), which Go and PostgreSQL print
// differently, is printed alike by both stores (db.InetText).
func TestNeverRetriedIPv4CompatibleClientSameOnBothStores(t *testing.T) {
	out := neverRetriedCSV(t, []dec{
		{time: "2026-11-01 08:00", client: "::192.0.2.9", sender: "a@example.biz", rcpt: "v@example.org", check: "greylist", action: greylisted},
	})
	if out[db.SQLite] != out[db.Postgres] || !strings.Contains(out[db.SQLite], "::192.0.2.9") {
		t.Errorf("never-retried csv differs or lacks ::192.0.2.9:\nsqlite:\n%s\npostgres:\n%s", out[db.SQLite], out[db.Postgres])
	}
}
