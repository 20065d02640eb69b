package report

import (
	"time"
)

// table is one report ready to print: a column name and a value per cell.
// Cell values are string, int64, seconds or time.Time.
type table struct {
	key   string // JSON member name
	title string // text heading
	cols  []string
	rows  [][]any
}

// seconds is a delay: an integer in JSON and CSV, a duration in text.
type seconds int64

// newTable makes the table of rows, cells giving the values of one row in
// the order of cols.
func newTable[R any](key, title string, cols []string, rows []R, cells func(R) []any) *table {
	t := &table{key: key, title: title, cols: cols}
	for _, r := range rows {
		t.rows = append(t.rows, cells(r))
	}
	return t
}

func dailyTable(rows []DailyRow) *table {
	return newTable("daily", "Decisions per day (UTC)", []string{
		"day", "requests", "deferred", "passed_after_delay", "whitelisted", "rejected_dnsbl",
		"rejected_spf", "rejected_other", "observe_would_reject", "observe_would_defer", "check_errors"},
		rows, func(r DailyRow) []any {
			return []any{r.Day, r.Requests, r.Deferred, r.PassedAfterDelay, r.Whitelisted,
				r.RejectedDNSBL, r.RejectedSPF, r.RejectedOther, r.ObserveWouldReject, r.ObserveWouldDefer,
				r.CheckErrors}
		})
}

func retryTable(rows []RetryDelayRow) *table {
	return newTable("retry_delay", "Greylisting retry delay per day (UTC), passes after a delay", []string{
		"day", "passes", "min_seconds", "p50_seconds", "p90_seconds", "p99_seconds", "max_seconds", "avg_seconds"},
		rows, func(r RetryDelayRow) []any {
			return []any{r.Day, r.Passes, seconds(r.Min), seconds(r.P50), seconds(r.P90),
				seconds(r.P99), seconds(r.Max), seconds(r.Avg)}
		})
}

func neverTable(rows []NeverRetriedRow) *table {
	return newTable("never_retried", "Triplets deferred by greylisting and never passed", []string{
		"client", "client_name", "helo", "sender", "recipient", "first_deferred", "last_deferred", "deferrals"},
		rows, func(r NeverRetriedRow) []any {
			return []any{r.Client, r.ClientName, r.Helo, r.Sender, r.Recipient,
				r.FirstDeferred.UTC(), r.LastDeferred.UTC(), r.Deferrals}
		})
}

// cell renders a value for text and CSV; human says text.
func cell(v any, human bool) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return itoa(v)
	case seconds:
		if human {
			return (time.Duration(v) * time.Second).String()
		}
		return itoa(int64(v))
	case time.Time:
		if human {
			return v.Format("2006-01-02 15:04:05")
		}
		return v.Format(time.RFC3339)
	}
	return ""
}
