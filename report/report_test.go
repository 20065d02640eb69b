package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func at(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// dec builds a decision the way the engine records it.
type dec struct {
	time, client, sender, rcpt, check, action, would string
	delay                                            time.Duration
	whitelist, errs                                  string
}

func (x dec) row(t *testing.T) decisionlog.Row {
	t.Helper()
	a, err := policy.ParseAction(x.action)
	if err != nil {
		t.Fatal(err)
	}
	d := &policy.Decision{Time: at(x.time), Check: x.check, Action: a, Delay: x.delay,
		Req: &policy.Request{ClientAddress: netip.MustParseAddr(x.client), Sender: x.sender,
			Recipient: x.rcpt, HeloName: "helo." + x.client, ClientName: "unknown"}}
	if x.would != "" {
		d.Observe = true
		if d.Would, err = policy.ParseAction(x.would); err != nil {
			t.Fatal(err)
		}
	}
	d.Facts.Whitelist = x.whitelist
	if x.errs != "" {
		d.Errors = []policy.CheckError{{Check: x.errs}}
	}
	return decisionlog.FromDecision(d, "mx1")
}

const greylisted = "DEFER_IF_PERMIT 4.2.0 Greylisted"

// fixture is a known set of decisions over three UTC days.
func fixture(t *testing.T, d *db.DB) {
	decs := []dec{
		// Oct 31. Triplet A: deferred, retried early, passed after 300 s
		// (with the X-Greylist header, so Postfix got PREPEND).
		{time: "2026-10-31 10:00", client: "192.0.2.10", sender: "a@example.net", rcpt: "u@example.org", check: "greylist", action: greylisted},
		{time: "2026-10-31 10:01", client: "192.0.2.10", sender: "a@example.net", rcpt: "u@example.org", check: "greylist", action: greylisted},
		{time: "2026-10-31 10:05", client: "192.0.2.10", sender: "a@example.net", rcpt: "u@example.org", action: "PREPEND X-Greylist: delayed 300 seconds", delay: 300 * time.Second},
		// Triplet B: deferred twice, never passed.
		{time: "2026-10-31 11:00", client: "198.51.100.7", sender: "spam@bad.example", rcpt: "u@example.org", check: "greylist", action: greylisted},
		{time: "2026-10-31 11:30", client: "198.51.100.7", sender: "spam@bad.example", rcpt: "u@example.org", check: "greylist", action: greylisted},
		{time: "2026-10-31 12:00", client: "192.0.2.20", sender: "b@example.net", rcpt: "u@example.org", action: "DUNNO", whitelist: "client 192.0.2.0/24"},
		{time: "2026-10-31 12:01", client: "203.0.113.5", sender: "c@example.net", rcpt: "u@example.org", check: "dnsbl", action: "REJECT 5.7.1 listed"},
		{time: "2026-10-31 12:02", client: "203.0.113.6", sender: "d@example.net", rcpt: "u@example.org", check: "spf", action: "550 5.7.23 SPF fail"},
		{time: "2026-10-31 12:03", client: "203.0.113.7", sender: "e@example.net", rcpt: "u@example.org", check: "dnsbl", action: "DUNNO", would: "REJECT 5.7.1 listed"},
		// Triplet E: deferred Oct 31, passed 14 h later on Nov 1.
		{time: "2026-10-31 12:00", client: "192.0.2.50", sender: "e@example.com", rcpt: "w@example.org", check: "greylist", action: greylisted},
		// Nov 1. Triplet C (IPv6) passes after 600 s, without a header.
		{time: "2026-11-01 00:10", client: "2001:db8::1", sender: "c@example.net", rcpt: "v@example.org", check: "greylist", action: greylisted},
		{time: "2026-11-01 00:20", client: "2001:db8::1", sender: "c@example.net", rcpt: "v@example.org", action: "DUNNO", delay: 600 * time.Second},
		{time: "2026-11-01 02:00", client: "192.0.2.50", sender: "e@example.com", rcpt: "w@example.org", action: "DUNNO", delay: 14 * time.Hour},
		// Triplet D: deferred once, never retried.
		{time: "2026-11-01 08:00", client: "192.0.2.99", sender: "x@example.biz", rcpt: "v@example.org", check: "greylist", action: greylisted},
		{time: "2026-11-01 09:00", client: "192.0.2.98", sender: "y@example.biz", rcpt: "v@example.org", check: "helo", action: "REJECT 5.7.1 bad helo"},
		{time: "2026-11-01 09:01", client: "192.0.2.97", sender: "z@example.biz", rcpt: "v@example.org", action: "DUNNO", errs: "dnsbl"},
		{time: "2026-11-01 09:02", client: "192.0.2.96", sender: "z@example.biz", rcpt: "v@example.org", check: "greylist", action: "DUNNO", would: greylisted},
	}
	// Nov 2: 100 passes delayed 1..100 s, for the percentiles.
	for i := 1; i <= 100; i++ {
		decs = append(decs, dec{time: "2026-11-02 10:00", client: "192.0.2.1", sender: "p@example.net",
			rcpt: "u@example.org", action: "DUNNO", delay: time.Duration(i) * time.Second})
	}
	rows := make([]decisionlog.Row, len(decs))
	for i, x := range decs {
		rows[i] = x.row(t)
	}
	if err := decisionlog.Insert(dbtest.Context(t), d, rows); err != nil {
		t.Fatal(err)
	}
}

func TestViews(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		fixture(t, d)
		daily, err := Daily(ctx, d, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		wantDaily := []DailyRow{
			{Day: "2026-10-31", Requests: 10, Deferred: 5, PassedAfterDelay: 1, Whitelisted: 1,
				RejectedDNSBL: 1, RejectedSPF: 1, ObserveWouldReject: 1},
			{Day: "2026-11-01", Requests: 7, Deferred: 2, PassedAfterDelay: 2, RejectedOther: 1,
				ObserveWouldDefer: 1, CheckErrors: 1},
			{Day: "2026-11-02", Requests: 100, PassedAfterDelay: 100},
		}
		if !reflect.DeepEqual(daily, wantDaily) {
			t.Errorf("daily\n got %+v\nwant %+v", daily, wantDaily)
		}
		if daily, _ := Daily(ctx, d, at("2026-11-01 23:59")); len(daily) != 2 {
			t.Errorf("daily since Nov 1 23:59 = %+v, want Nov 1 and 2", daily)
		}

		retry, err := RetryDelay(ctx, d, time.Time{})
		wantRetry := []RetryDelayRow{
			{Day: "2026-10-31", Passes: 1, Min: 300, P50: 300, P90: 300, P99: 300, Max: 300, Avg: 300},
			{Day: "2026-11-01", Passes: 2, Min: 600, P50: 600, P90: 50400, P99: 50400, Max: 50400, Avg: 25500},
			{Day: "2026-11-02", Passes: 100, Min: 1, P50: 50, P90: 90, P99: 99, Max: 100, Avg: 51},
		}
		if err != nil || !reflect.DeepEqual(retry, wantRetry) {
			t.Errorf("retry delay = %v\n got %+v\nwant %+v", err, retry, wantRetry)
		}

		never, err := NeverRetried(ctx, d, time.Time{}, 0)
		wantNever := []NeverRetriedRow{
			{Client: "192.0.2.99", ClientName: "unknown", Helo: "helo.192.0.2.99", Sender: "x@example.biz",
				Recipient: "v@example.org", FirstDeferred: at("2026-11-01 08:00"), LastDeferred: at("2026-11-01 08:00"), Deferrals: 1},
			{Client: "198.51.100.7", ClientName: "unknown", Helo: "helo.198.51.100.7", Sender: "spam@bad.example",
				Recipient: "u@example.org", FirstDeferred: at("2026-10-31 11:00"), LastDeferred: at("2026-10-31 11:30"), Deferrals: 2},
		}
		for i := range never {
			never[i].FirstDeferred, never[i].LastDeferred = never[i].FirstDeferred.UTC(), never[i].LastDeferred.UTC()
		}
		if err != nil || !reflect.DeepEqual(never, wantNever) {
			t.Errorf("never retried = %v\n got %+v\nwant %+v", err, never, wantNever)
		}
		if n, _ := NeverRetried(ctx, d, at("2026-11-01 00:00"), 0); len(n) != 1 || n[0].Client != "192.0.2.99" {
			t.Errorf("never retried since Nov 1 = %+v, want triplet D only", n)
		}
		if n, _ := NeverRetried(ctx, d, time.Time{}, 1); len(n) != 1 || n[0].Client != "192.0.2.99" {
			t.Errorf("never retried, limit 1 = %+v, want the newest", n)
		}
	})
}

// Both stores print the same reports, byte for byte.
func TestRunFormats(t *testing.T) {
	out := map[string]map[string]string{}
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		fixture(t, d)
		out[d.Kind()] = map[string]string{}
		for _, f := range []string{FormatText, FormatJSON, FormatCSV} {
			for _, r := range []string{ReportAll, ReportRetryDelay} {
				var buf bytes.Buffer
				opt := Options{Format: f, Report: r, Since: at("2026-11-01 00:00")}
				if err := Run(dbtest.Context(t), d, opt, &buf); err != nil {
					t.Fatal(err)
				}
				out[d.Kind()][f+"/"+r] = buf.String()
			}
		}
	})
	if !reflect.DeepEqual(out[db.SQLite], out[db.Postgres]) {
		t.Fatalf("stores differ:\nsqlite %q\npostgres %q", out[db.SQLite], out[db.Postgres])
	}
	got := out[db.SQLite]
	checkText(t, got["text/"+ReportRetryDelay], got["text/"+ReportAll])
	checkJSON(t, got["json/"+ReportRetryDelay], got["json/"+ReportAll])
	checkCSV(t, got["csv/"+ReportRetryDelay], got["csv/"+ReportAll])
}

func checkText(t *testing.T, one, all string) {
	want := `Greylisting retry delay per day (UTC), passes after a delay
day         passes  min_seconds  p50_seconds  p90_seconds  p99_seconds  max_seconds  avg_seconds
2026-11-01  2       10m0s        10m0s        14h0m0s      14h0m0s      14h0m0s      7h5m0s
2026-11-02  100     1s           50s          1m30s        1m39s        1m40s        51s
`
	if one != want {
		t.Errorf("text retry-delay:\n%s\nwant:\n%s", one, want)
	}
	for _, s := range []string{"Decisions per day (UTC)\n", "\n\nTriplets deferred by greylisting and never passed\n",
		"192.0.2.99  unknown      helo.192.0.2.99  x@example.biz  v@example.org  2026-11-01 08:00:00  2026-11-01 08:00:00  1\n"} {
		if !strings.Contains(all, s) {
			t.Errorf("text all lacks %q:\n%s", s, all)
		}
	}
}

func checkJSON(t *testing.T, one, all string) {
	var rows []map[string]any
	if err := json.Unmarshal([]byte(one), &rows); err != nil {
		t.Fatalf("json retry-delay: %v\n%s", err, one)
	}
	if len(rows) != 2 || rows[1]["p90_seconds"] != 90.0 || rows[0]["day"] != "2026-11-01" {
		t.Errorf("json retry-delay rows %v", rows)
	}
	if !strings.HasPrefix(one, `[
  {"day": "2026-11-01", "passes": 2, "min_seconds": 600,`) {
		t.Errorf("json keys out of column order:\n%s", one)
	}
	var m map[string][]map[string]any
	if err := json.Unmarshal([]byte(all), &m); err != nil {
		t.Fatalf("json all: %v\n%s", err, all)
	}
	if len(m["daily"]) != 2 || len(m["retry_delay"]) != 2 || len(m["never_retried"]) != 1 ||
		m["never_retried"][0]["last_deferred"] != "2026-11-01T08:00:00Z" || m["daily"][0]["requests"] != 7.0 {
		t.Errorf("json all: %v", m)
	}
}

func checkCSV(t *testing.T, one, all string) {
	recs, err := csv.NewReader(strings.NewReader(one)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"day", "passes", "min_seconds", "p50_seconds", "p90_seconds", "p99_seconds", "max_seconds", "avg_seconds"},
		{"2026-11-01", "2", "600", "600", "50400", "50400", "50400", "25500"},
		{"2026-11-02", "100", "1", "50", "90", "99", "100", "51"},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Errorf("csv retry-delay = %v, want %v", recs, want)
	}
	sections := strings.Split(all, "\n\n")
	if len(sections) != 3 || !strings.HasPrefix(sections[0], "day,requests,deferred,") ||
		!strings.HasPrefix(sections[2], "client,client_name,helo,") {
		t.Errorf("csv all: want 3 sections, got %q", all)
	}
}

func TestRunRejectsUnknown(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	for _, opt := range []Options{{Format: "xml"}, {Report: "weekly"}} {
		if err := Run(dbtest.Context(t), d, opt, &bytes.Buffer{}); err == nil {
			t.Errorf("Run(%+v) accepted", opt)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := at("2026-11-08 12:00")
	for in, want := range map[string]time.Time{
		"7d":                   at("2026-11-01 12:00"),
		"1w":                   at("2026-11-01 12:00"),
		"36h":                  at("2026-11-07 00:00"),
		"1h30m":                at("2026-11-08 10:30"),
		" 2026-11-01 ":         at("2026-11-01 00:00"),
		"2026-11-01T06:00:00Z": at("2026-11-01 06:00"),
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-3d", "0h", "7x", "2026-13-01", "yesterday", "1.5d"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

// A report's days are YYYY-MM-DD whatever the PostgreSQL server's
// DateStyle and TimeZone: ::text printed "01.03.2026" under German.
func TestDaysAreISOWhateverDateStyle(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := dbtest.Context(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `DO $$ BEGIN
		EXECUTE format('ALTER DATABASE %I SET datestyle = %L', current_database(), 'German, DMY');
		EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Pacific/Kiritimati');
		END $$`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := dbtest.OpenDSN(t, dsn)
	day := time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC) // already March 2 in Kiritimati
	req := &policy.Request{ClientAddress: netip.MustParseAddr("192.0.2.1"), Sender: "a@example.org"}
	rows := []decisionlog.Row{decisionlog.FromDecision(&policy.Decision{Time: day, Req: req,
		Action: policy.DunnoAction, Delay: time.Minute}, "mx1")}
	if err := decisionlog.Insert(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	since := day.Add(-time.Hour)
	daily, err := Daily(ctx, d, since)
	if err != nil || len(daily) != 1 {
		t.Fatalf("daily: %+v, %v", daily, err)
	}
	retry, err := RetryDelay(ctx, d, since)
	if err != nil || len(retry) != 1 {
		t.Fatalf("retry delay: %+v, %v", retry, err)
	}
	counts, err := VerbCounts(ctx, d, since)
	if err != nil || len(counts) != 1 {
		t.Fatalf("verb counts: %+v, %v", counts, err)
	}
	for what, got := range map[string]string{"daily": daily[0].Day, "retry delay": retry[0].Day, "verb counts": counts[0].Day} {
		if got != "2026-03-01" {
			t.Errorf("%s: day %q, want 2026-03-01", what, got)
		}
	}
}
