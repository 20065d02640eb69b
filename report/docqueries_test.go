package report

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// docQuery returns the statement of docs/reporting.md's SQL blocks that
// contains marker.
func docQuery(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/reporting.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, blk := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		for _, q := range strings.Split(blk[1], ";") {
			if strings.Contains(q, marker) {
				return stripComments(q)
			}
		}
	}
	t.Fatalf("no query with %q in docs/reporting.md", marker)
	return ""
}

// docs/reporting.md, "DNSBL rejections per list ... over the last week":
// the reason names every list that scored and the score (dnsbl/score.go,
// scoreCard.reason: "listed a,b (score N)"), so the query splits it into
// a row per list; observe mode's rows rejected nothing and are left out.
func TestDocDNSBLRejectionsPerList(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	now := time.Now().UTC().Add(-time.Hour)
	var rows []decisionlog.Row
	for i, reason := range []string{
		"listed zen.spamhaus.org (score 2)",
		"listed zen.spamhaus.org,bl.spamcop.net (score 3)",
	} {
		a, _ := policy.ParseAction("REJECT 5.7.1 listed")
		rows = append(rows, decisionlog.FromDecision(&policy.Decision{Time: now.Add(time.Duration(i) * time.Second),
			Check: "dnsbl", Action: a, Reason: reason,
			Req: &policy.Request{Sender: "a@example.net", Recipient: "u@example.org"}}, "mx1"))
	}
	// In observe mode nothing was rejected: verb is what enforcing would
	// have answered (docs/reporting.md, verb), so the doc's query counts it.
	would, _ := policy.ParseAction("REJECT 5.7.1 listed")
	rows = append(rows, decisionlog.FromDecision(&policy.Decision{Time: now.Add(5 * time.Second),
		Check: "dnsbl", Action: policy.DunnoAction, Observe: true, Would: would,
		Reason: "listed zen.spamhaus.org (score 2)",
		Req:    &policy.Request{Sender: "b@example.net", Recipient: "u@example.org"}}, "mx1"))
	if err := decisionlog.Insert(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	q := docQuery(t, "check_name = 'dnsbl'")
	res, err := d.PG.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	type rc struct {
		Reason string
		Count  int64
	}
	got, err := pgx.CollectRows(res, pgx.RowToStructByPos[rc])
	if err != nil {
		t.Fatal(err)
	}
	perList := map[string]int64{}
	for _, r := range got {
		perList[r.Reason] = r.Count
	}
	// zen.spamhaus.org's third row is observe mode's, which rejected nothing.
	if perList["zen.spamhaus.org"] != 2 || perList["bl.spamcop.net"] != 1 || len(perList) != 2 {
		t.Errorf("doc query %q\ngave %+v; want a row per list: zen.spamhaus.org 2, bl.spamcop.net 1", q, got)
	}
}

// docs/reporting.md, "Example queries": on SQLite the views show their
// times as datetime() text (shared/report_views.sql, utc), which compares
// greater than any number, so "a day ago" is datetime('now', '-1 day')
// there, not the decisions table's strftime('%s','now') - 86400, which
// would match a triplet deferred in 2020.
func TestDocSQLiteDayAgoOnNeverRetried(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	ctx := dbtest.Context(t)
	var rows []decisionlog.Row
	for i, at := range []string{"2020-01-01 10:00", time.Now().UTC().Add(-time.Hour).Format("2006-01-02 15:04")} {
		rows = append(rows, dec{time: at, client: "192.0.2.9", sender: fmt.Sprintf("s%d@example.net", i),
			rcpt: "u@example.org", check: "greylist", action: greylisted}.row(t))
	}
	if err := decisionlog.Insert(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../docs/reporting.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "use `datetime('now',\n'-1 day')` with them") {
		t.Fatal("docs/reporting.md no longer gives datetime('now', '-1 day') for the views")
	}
	var n int
	err = d.SQL.QueryRowContext(ctx, `SELECT count(*) FROM report_never_retried
		WHERE last_deferred > datetime('now', '-1 day')`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d triplet(s) deferred in the last day on SQLite, want the one of an hour ago", n)
	}
}

// docs/reporting.md, "Sender domains that were deferred and never
// retried": the SQLite variant of split_part(sender, '@', 2) gives the
// same domains, ” for a sender without '@' (an unqualified
// MAIL FROM:<postmaster>, which smtpd takes unless
// reject_non_fqdn_sender) as PostgreSQL does.
func TestDocSenderDomainVariantsAgree(t *testing.T) {
	q := docQuery(t, "split_part(sender, '@', 2)")
	got := map[string][]string{}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		var rows []decisionlog.Row
		for i, s := range []string{"postmaster", "a@example.net"} {
			r := dec{time: "2026-11-01 10:00", client: "192.0.2.9", sender: s, rcpt: "u@example.org",
				check: "greylist", action: greylisted}.row(t)
			r.Time = r.Time.Add(time.Duration(i) * time.Second)
			rows = append(rows, r)
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		if d.Kind() == db.Postgres {
			res, err := d.PG.Query(ctx, "SELECT * FROM ("+q+") x ORDER BY 1")
			if err != nil {
				t.Fatal(err)
			}
			for res.Next() {
				var dom string
				var n1, n2 int64
				if err := res.Scan(&dom, &n1, &n2); err != nil {
					t.Fatal(err)
				}
				got[d.Kind()] = append(got[d.Kind()], dom)
			}
			res.Close()
			return
		}
		// The doc's SQLite variant, in place of split_part.
		sq := strings.Replace(q, "split_part(sender, '@', 2)", docSQLiteDomain(t), 1)
		res, err := d.SQL.QueryContext(ctx, "SELECT * FROM ("+sq+") ORDER BY 1")
		if err != nil {
			t.Fatalf("%v\n%s", err, sq)
		}
		defer res.Close()
		for res.Next() {
			var dom string
			var n1, n2 int64
			if err := res.Scan(&dom, &n1, &n2); err != nil {
				t.Fatal(err)
			}
			got[d.Kind()] = append(got[d.Kind()], dom)
		}
	})
	if strings.Join(got[db.SQLite], ",") != strings.Join(got[db.Postgres], ",") {
		t.Errorf("sender domains: sqlite %q, postgres %q", got[db.SQLite], got[db.Postgres])
	}
}

// docSQLiteDomain is the SQLite variant docs/reporting.md gives for the
// sender's domain, from its "-- SQLite:" comment.
func docSQLiteDomain(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/reporting.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)-- SQLite: (CASE WHEN instr\(sender.*?END) AS domain`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("no SQLite variant of the sender's domain in docs/reporting.md")
	}
	return regexp.MustCompile(`\n--\s*`).ReplaceAllString(m[1], " ")
}
