package report

import (
	"context"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// ReportRateLimit is report_ratelimit (migrations/shared/ratelimit_views.sql):
// per day and rule, what the rate-limit rules answered.
const ReportRateLimit = "ratelimit"

// RateLimitRow is one day and rule of report_ratelimit.
type RateLimitRow struct {
	Day, Rule, Kind                string
	Hits, Deferred, Rejected, Held int64
	Observed, Clients, Senders     int64
}

const rateLimitCols = `rule, kind, hits, deferred, rejected, held, observed, clients, senders`

func rateLimitDest(r *RateLimitRow) []any {
	return []any{&r.Day, &r.Rule, &r.Kind, &r.Hits, &r.Deferred, &r.Rejected, &r.Held,
		&r.Observed, &r.Clients, &r.Senders}
}

// RateLimit returns report_ratelimit from since's day on, oldest first,
// by rule within a day.
func RateLimit(ctx context.Context, d *db.DB, since time.Time) ([]RateLimitRow, error) {
	return db.Dialect(d.Kind(), pgRateLimit, sqliteRateLimit)(ctx, d, since)
}

func pgRateLimit(ctx context.Context, d *db.DB, since time.Time) ([]RateLimitRow, error) {
	return queryPG(ctx, d, rateLimitDest, pgDays("report_ratelimit", rateLimitCols)+", rule", dayOf(since))
}

func sqliteRateLimit(ctx context.Context, d *db.DB, since time.Time) ([]RateLimitRow, error) {
	return querySQLite(ctx, d.SQL, rateLimitDest, sqliteDays("report_ratelimit", rateLimitCols)+", rule", dayOf(since))
}

func rateLimitTable(rows []RateLimitRow) *table {
	return newTable("ratelimit", "Rate-limit rules per day (UTC)", []string{
		"day", "rule", "kind", "hits", "deferred", "rejected", "held", "observed", "clients", "senders"},
		rows, func(r RateLimitRow) []any {
			return []any{r.Day, r.Rule, r.Kind, r.Hits, r.Deferred, r.Rejected, r.Held,
				r.Observed, r.Clients, r.Senders}
		})
}
