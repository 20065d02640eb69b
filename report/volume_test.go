package report

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// volumeRows is a month of a busy MX: about 33,000 decisions a day.
const volumeRows = 1_000_000

// volumeSelect generates the rows in SQL (loading a million rows through
// Go would measure the loader, not the reports). Row i is decided at
// start + i * 2.592 s, so the rows span 30 days; it belongs to triplet
// k = i mod 300,000, which recurs every 9 days. A tenth of the triplets
// are deferred every time (never retried); a third are deferred on first
// contact and pass after a delay on their second; some are rejected by
// DNSBL or SPF, or whitelisted; the rest pass.
const volumeSelect = `
SELECT {{time}} AS time, 'mx1' AS host,
       {{client}} AS client,
       'host' || k || '.example.net' AS client_name, 'helo' || k || '.example.net' AS helo,
       's' || k || '@d' || (k % 5000) || '.example' AS sender,
       'r' || (k % 2000) || '@example.org' AS recipient,
       'inst' || i AS instance, '' AS queue_id,
       CASE kind WHEN 1 THEN 'greylist' WHEN 3 THEN 'dnsbl' WHEN 4 THEN 'spf' ELSE '' END AS check_name,
       CASE kind WHEN 1 THEN 'DEFER_IF_PERMIT 4.2.0 Greylisted' WHEN 2 THEN 'PREPEND X-Greylist: delayed'
                 WHEN 3 THEN 'REJECT 5.7.1 listed' WHEN 4 THEN '550 5.7.23 SPF fail' ELSE 'DUNNO' END AS action,
       '' AS would_action,
       CASE kind WHEN 1 THEN 'DEFER' WHEN 2 THEN 'PREPEND' WHEN 3 THEN 'REJECT' WHEN 4 THEN 'REJECT'
                 ELSE 'DUNNO' END AS verb,
       '' AS reason,
       CASE kind WHEN 2 THEN 120 + (k % 3600) ELSE 0 END AS delay_seconds,
       800 + (i % 1000) AS duration_us, {{false}} AS observe,
       CASE kind WHEN 5 THEN 'client 10.0.0.0/8' ELSE '' END AS whitelist, '' AS errors
FROM (SELECT i, k,
             CASE WHEN k % 10 = 0 THEN 1
                  WHEN k % 3 = 0 AND i < 300000 THEN 1
                  WHEN k % 3 = 0 AND i < 600000 THEN 2
                  WHEN k % 17 = 1 THEN 3
                  WHEN k % 23 = 2 THEN 4
                  WHEN k % 13 = 3 THEN 5
                  ELSE 0 END AS kind
      FROM (SELECT i, i % 300000 AS k FROM {{series}}) g) s`

func volumeSQL(kind string) string {
	r := strings.NewReplacer(
		"{{time}}", "$1::timestamptz + i * interval '2592 milliseconds'",
		"{{client}}", "('10.0.' || (k / 250 % 200) || '.' || (k % 250))::inet",
		"{{false}}", "false",
		"{{series}}", "generate_series(0, $2 - 1) i")
	if kind == db.SQLite {
		r = strings.NewReplacer(
			"{{time}}", "?1 + i * 2592 / 1000",
			"{{client}}", "'10.0.' || (k / 250 % 200) || '.' || (k % 250)",
			"{{false}}", "0",
			"{{series}}", "(WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?2 - 1) SELECT i FROM n)")
	}
	return "INSERT INTO decisions SELECT * FROM (" + r.Replace(volumeSelect) + ") v"
}

// BenchmarkVolume loads a month of decisions (a million rows) and times
// the reports and the retention prune on each store. Run it once:
//
//	go test -run '^$' -bench Volume -benchtime 1x ./report/
func BenchmarkVolume(b *testing.B) {
	for _, kind := range []string{db.Postgres, db.SQLite} {
		b.Run(kind, func(b *testing.B) {
			for range b.N {
				volume(b, kind)
			}
		})
	}
}

func volume(b *testing.B, kind string) {
	d := dbtest.Open(b, kind)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	start := now.AddDate(0, 0, -30)
	if _, err := decisionlog.EnsurePartitions(ctx, d, start, 31); err != nil {
		b.Fatal(err)
	}
	step(b, "load", func() error { return load(ctx, d, start) })
	b.Logf("%s: %s on disk", kind, size(ctx, b, d))
	for _, r := range []string{ReportDaily, ReportRetryDelay, ReportNeverRetried} {
		step(b, "report "+r, func() error {
			return Run(ctx, d, Options{Report: r, Since: start, Limit: 100}, io.Discard)
		})
	}
	step(b, "report all, last 7 days", func() error {
		return Run(ctx, d, Options{Since: now.AddDate(0, 0, -7), Limit: 100}, io.Discard)
	})
	var res decisionlog.PruneResult
	step(b, "prune 20 days", func() (err error) {
		res, err = decisionlog.Prune(ctx, d, now, 20*24*time.Hour, false)
		return err
	})
	b.Logf("%s: prune removed %d rows, %d partitions", kind, res.Rows, len(res.Partitions))
	if res.Rows < volumeRows/4 {
		b.Fatalf("prune removed only %d rows", res.Rows)
	}
}

func load(ctx context.Context, d *db.DB, start time.Time) error {
	var err error
	if d.IsPostgres() {
		if _, err = d.PG.Exec(ctx, volumeSQL(db.Postgres), start, volumeRows); err == nil {
			_, err = d.PG.Exec(ctx, "ANALYZE decisions")
		}
	} else {
		if _, err = d.SQL.ExecContext(ctx, volumeSQL(db.SQLite), start.Unix(), volumeRows); err == nil {
			_, err = d.SQL.ExecContext(ctx, "ANALYZE")
		}
	}
	return err
}

// step times f, fails the benchmark on error, and reports the seconds.
func step(b *testing.B, name string, f func() error) {
	b.Helper()
	t0 := time.Now()
	if err := f(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	s := time.Since(t0).Seconds()
	b.ReportMetric(s, strings.ReplaceAll(name, " ", "_")+"_s")
	b.Logf("%-26s %6.2f s", name, s)
}

// size is the decisions table's footprint, indexes included.
func size(ctx context.Context, b *testing.B, d *db.DB) string {
	var s string
	var err error
	if d.IsPostgres() {
		err = d.PG.QueryRow(ctx, `SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid)))
			FROM pg_inherits WHERE inhparent = 'decisions'::regclass`).Scan(&s)
	} else {
		err = d.SQL.QueryRowContext(ctx, `SELECT (page_count * page_size >> 20) || ' MB (whole file)'
			FROM pragma_page_count(), pragma_page_size()`).Scan(&s)
	}
	if err != nil {
		b.Fatal(err)
	}
	return s
}
