package report

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// The queries of the HTML page that the reporting views do not answer,
// in one implementation per store kind like query.go's dialect, picked by
// db.Dialect. The SQL text is shared where only the placeholders differ.
// The predicates restate the views' definitions (the passes of
// report_retry_delay, the rejections of report_daily; see
// migrations/shared/report_views.sql); keep them in step.
type htmlDialect interface {
	verbCounts(ctx context.Context, from time.Time) ([]VerbCount, error)
	delayBins(ctx context.Context, since time.Time) ([]delayBin, error)
	neverClients(ctx context.Context, since time.Time, limit int) ([]NeverRetriedClient, error)
	dnsblRejects(ctx context.Context, since time.Time) ([]ReasonCount, error)
	pending(ctx context.Context, limit int) ([]pendingRow, error)
}

func htmlDialectOf(d *db.DB) htmlDialect {
	return db.Dialect[htmlDialect](d.Kind(), pgHTML{d}, sqliteHTML{d})
}

// VerbCount is how many decisions of one day had a verb and check.
type VerbCount struct {
	Day     string // YYYY-MM-DD, UTC
	Verb    string // DUNNO, PREPEND, WARN, DEFER or REJECT
	Check   string // the deciding check; "" when none was decisive
	Observe bool   // computed but not enforced: Verb is what enforcing would have answered
	Count   int64
}

// VerbCounts returns the decisions from since's UTC day on, counted by day,
// verb, check and observe mode, oldest day first.
func VerbCounts(ctx context.Context, d *db.DB, since time.Time) ([]VerbCount, error) {
	return htmlDialectOf(d).verbCounts(ctx, dayStart(since))
}

// verbCountsSQL is the query of VerbCounts; %[1]s is the day of time, %[2]s
// the placeholder of the first instant counted.
const verbCountsSQL = `SELECT %[1]s, verb, check_name, observe, count(*) FROM decisions
	WHERE time >= %[2]s GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`

func verbDest(r *VerbCount) []any { return []any{&r.Day, &r.Verb, &r.Check, &r.Observe, &r.Count} }

// delayBuckets are the upper bounds of the retry-delay histogram's bins;
// a last bin holds everything longer. Finer where most retries land:
// greylist.delay defaults to 2 minutes and MTAs retry within minutes to
// an hour (RFC 5321 §4.5.4.1 suggests at least 30 minutes between tries).
var delayBuckets = []time.Duration{
	2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour,
}

// DelayHistogram returns, per bin of delayBuckets (one more for longer
// delays), how many greylisting passes since since had been delayed that
// long: the passes of report_retry_delay, not grouped by day.
func DelayHistogram(ctx context.Context, d *db.DB, since time.Time) ([]int64, error) {
	bins, err := htmlDialectOf(d).delayBins(ctx, since)
	out := make([]int64, len(delayBuckets)+1)
	for _, b := range bins {
		out[b.i] = b.n
	}
	return out, err
}

type delayBin struct{ i, n int64 }

func binDest(b *delayBin) []any { return []any{&b.i, &b.n} }

// delayBinsSQL counts passes per bin; %s is the placeholder of since.
var delayBinsSQL = `SELECT ` + bucketCase("delay_seconds") + `, count(*) FROM decisions
	WHERE NOT observe AND delay_seconds > 0 AND verb IN ('DUNNO', 'PREPEND', 'WARN', 'HOLD')
	AND time >= %s GROUP BY 1`

// bucketCase is a CASE expression giving the index of col's bin in
// delayBuckets: the same SQL on both stores.
func bucketCase(col string) string {
	var b strings.Builder
	b.WriteString("CASE")
	for i, d := range delayBuckets {
		fmt.Fprintf(&b, " WHEN %s < %d THEN %d", col, int64(d/time.Second), i)
	}
	fmt.Fprintf(&b, " ELSE %d END", len(delayBuckets))
	return b.String()
}

// NeverRetriedClient sums report_never_retried per client address.
type NeverRetriedClient struct {
	Client, ClientName, Helo, Sender string // name, HELO and a sender of its triplets
	Triplets, Deferrals              int64
	LastDeferred                     time.Time
}

// NeverRetriedClients returns the clients with the most triplets of
// report_never_retried last deferred at or after since, at most limit.
func NeverRetriedClients(ctx context.Context, d *db.DB, since time.Time, limit int) ([]NeverRetriedClient, error) {
	rows, err := htmlDialectOf(d).neverClients(ctx, since, limit)
	for i := range rows {
		rows[i].LastDeferred = rows[i].LastDeferred.UTC()
	}
	return rows, err
}

// neverClientsSQL: %[1]s is the client as text, %[2]s the sum of
// deferrals as an integer, %[3]s and %[4]s the placeholders of since and
// the limit.
const neverClientsSQL = `SELECT %[1]s, max(client_name), max(helo), max(sender), count(*), %[2]s,
	max(last_deferred) FROM report_never_retried WHERE last_deferred >= %[3]s
	GROUP BY client ORDER BY 5 DESC, 6 DESC, 1 LIMIT %[4]s`

// neverClientDest scans a neverClientsSQL row; at wraps its time.
func neverClientDest(at func(*time.Time) any) func(*NeverRetriedClient) []any {
	return func(r *NeverRetriedClient) []any {
		return []any{&r.Client, &r.ClientName, &r.Helo, &r.Sender, &r.Triplets, &r.Deferrals, at(&r.LastDeferred)}
	}
}

// ReasonCount is how many enforced DNSBL rejections gave one reason.
type ReasonCount struct {
	Reason string
	Count  int64
}

// DNSBLRejects returns the reasons of the DNS list rejections since since.
func DNSBLRejects(ctx context.Context, d *db.DB, since time.Time) ([]ReasonCount, error) {
	return htmlDialectOf(d).dnsblRejects(ctx, since)
}

// dnsblRejectsSQL: %s is the placeholder of since.
const dnsblRejectsSQL = `SELECT reason, count(*) FROM decisions
	WHERE NOT observe AND verb = 'REJECT' AND check_name = 'dnsbl' AND time >= %s
	GROUP BY reason`

func reasonDest(r *ReasonCount) []any { return []any{&r.Reason, &r.Count} }

// PendingTriplet is a greylisting triplet that has not passed yet.
type PendingTriplet struct {
	Client, Sender, Recipient string // last client address, sender as sent
	FirstSeen                 time.Time
	Attempts                  int64
}

// Pending returns how many greylist_triplet rows are pending and the
// oldest limit of them, oldest first. Rows past greylist.max_age stay
// until gc deletes them.
func Pending(ctx context.Context, d *db.DB, limit int) (int64, []PendingTriplet, error) {
	rows, err := htmlDialectOf(d).pending(ctx, limit)
	if err != nil || len(rows) == 0 {
		return 0, nil, err
	}
	out := make([]PendingTriplet, len(rows))
	for i, r := range rows {
		out[i] = r.PendingTriplet
		out[i].FirstSeen = r.FirstSeen.UTC()
	}
	return rows[0].total, out, nil
}

// pendingRow is a pending triplet and the count of all of them.
type pendingRow struct {
	PendingTriplet
	total int64
}

// pendingSQL: %[1]s is the client address as text, %[2]s the placeholder
// of the limit.
const pendingSQL = `SELECT %[1]s, raw_sender, recipient, first_seen, attempts, count(*) OVER ()
	FROM greylist_triplet WHERE passed_at IS NULL ORDER BY first_seen, 1 LIMIT %[2]s`

// pendingDest scans a pendingSQL row; at wraps its time.
func pendingDest(at func(*time.Time) any) func(*pendingRow) []any {
	return func(r *pendingRow) []any {
		return []any{&r.Client, &r.Sender, &r.Recipient, at(&r.FirstSeen), &r.Attempts, &r.total}
	}
}

// pgHTML binds instants as timestamptz and prints inet as text.
type pgHTML struct{ d *db.DB }

func (p pgHTML) verbCounts(ctx context.Context, from time.Time) ([]VerbCount, error) {
	return queryPG(ctx, p.d, verbDest, fmt.Sprintf(verbCountsSQL, pgDay("(time AT TIME ZONE 'UTC')::date"), "$1"), from)
}

func (p pgHTML) delayBins(ctx context.Context, since time.Time) ([]delayBin, error) {
	return queryPG(ctx, p.d, binDest, fmt.Sprintf(delayBinsSQL, "$1"), since)
}

func (p pgHTML) neverClients(ctx context.Context, since time.Time, limit int) ([]NeverRetriedClient, error) {
	return queryPG(ctx, p.d, neverClientDest(func(t *time.Time) any { return t }),
		fmt.Sprintf(neverClientsSQL, "coalesce(host(client), '')", "sum(deferrals)::bigint", "$1", "$2"), since, limit)
}

func (p pgHTML) dnsblRejects(ctx context.Context, since time.Time) ([]ReasonCount, error) {
	return queryPG(ctx, p.d, reasonDest, fmt.Sprintf(dnsblRejectsSQL, "$1"), since)
}

func (p pgHTML) pending(ctx context.Context, limit int) ([]pendingRow, error) {
	return queryPG(ctx, p.d, pendingDest(func(t *time.Time) any { return t }),
		fmt.Sprintf(pendingSQL, "host(client_addr)", "$1"), limit)
}

// sqliteHTML binds instants as Unix seconds, or as the views' datetime()
// text where it compares with a view's time column.
type sqliteHTML struct{ d *db.DB }

func (s sqliteHTML) verbCounts(ctx context.Context, from time.Time) ([]VerbCount, error) {
	return querySQLite(ctx, s.d.SQL, verbDest, fmt.Sprintf(verbCountsSQL, "date(time, 'unixepoch')", "?"), from.Unix())
}

func (s sqliteHTML) delayBins(ctx context.Context, since time.Time) ([]delayBin, error) {
	return querySQLite(ctx, s.d.SQL, binDest, fmt.Sprintf(delayBinsSQL, "?"), since.Unix())
}

func (s sqliteHTML) neverClients(ctx context.Context, since time.Time, limit int) ([]NeverRetriedClient, error) {
	return querySQLite(ctx, s.d.SQL, neverClientDest(func(t *time.Time) any { return textTime{t} }),
		fmt.Sprintf(neverClientsSQL, "client", "sum(deferrals)", "?", "?"), since.UTC().Format(sqliteTime), limit)
}

func (s sqliteHTML) dnsblRejects(ctx context.Context, since time.Time) ([]ReasonCount, error) {
	return querySQLite(ctx, s.d.SQL, reasonDest, fmt.Sprintf(dnsblRejectsSQL, "?"), since.Unix())
}

func (s sqliteHTML) pending(ctx context.Context, limit int) ([]pendingRow, error) {
	return querySQLite(ctx, s.d.SQL, pendingDest(func(t *time.Time) any { return unixTime{t} }),
		fmt.Sprintf(pendingSQL, "client_addr", "?"), limit)
}

// unixTime scans the SQLite store's Unix seconds into a time.Time.
type unixTime struct{ t *time.Time }

func (u unixTime) Scan(src any) error {
	n, ok := src.(int64)
	if !ok {
		return fmt.Errorf("time column holds %T, want integer", src)
	}
	*u.t = time.Unix(n, 0).UTC()
	return nil
}

// dayStart is the midnight (UTC) that begins since's day, as the daily
// views count.
func dayStart(since time.Time) time.Time {
	y, m, d := since.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
