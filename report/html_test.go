package report

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// renderHTML returns the page of d at htmlNow over the last week, with
// top rows in each top list (0: the default).
func renderHTML(t *testing.T, d *db.DB, top int) string {
	t.Helper()
	var b bytes.Buffer
	opt := HTMLOptions{Since: htmlNow.Add(-7 * 24 * time.Hour), Now: htmlNow, Top: top}
	if err := WriteHTML(dbtest.Context(t), d, opt, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var chartIDs = []string{"chart-actions", "chart-checks", "chart-delays", "chart-lists", "chart-never"}

func TestHTMLEmpty(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		page := renderHTML(t, d, 0)
		for _, want := range []string{`id="no-data"`, "No data yet", "No decisions have been recorded since",
			"No triplet is pending.", "</html>"} {
			if !strings.Contains(page, want) {
				t.Errorf("empty page lacks %q", want)
			}
		}
		if strings.Contains(page, "<svg") {
			t.Error("empty page draws a chart")
		}
	})
}

// The same decisions give the same page on both stores, with every chart.
func TestHTMLCharts(t *testing.T) {
	var pages []string
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		week(t, d, false)
		page := renderHTML(t, d, 0)
		for _, id := range chartIDs {
			if !strings.Contains(page, `<svg id="`+id+`"`) {
				t.Errorf("no chart %s", id)
			}
		}
		for _, want := range []string{`<title id="chart-actions-t">Decisions per day by action</title>`,
			">DEFER</text>", ">would REJECT (observe)</text>", ">greylist</text>", ">zen.spamhaus.org</text>",
			">198.51.100.23</text>", "<summary>Numbers per day</summary>", `id="pending-table"`} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if strings.Contains(page, "No data yet") {
			t.Error("a full page says there is no data")
		}
		pages = append(pages, page)
	})
	if len(pages) == 2 && pages[0] != pages[1] {
		t.Errorf("SQLite and PostgreSQL pages differ:\n%s", firstDiff(pages[0], pages[1]))
	}
}

func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return "line " + itoa(int64(i+1)) + ":\n  " + la[i] + "\n  " + lb[i]
		}
	}
	return "lengths differ"
}

// Client-supplied names, HELOs and senders are text, in tables and in the
// charts' labels and titles alike.
func TestHTMLEscapes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		week(t, d, true)
		page := renderHTML(t, d, 100)
		if n := strings.Count(page, "<script"); n != 0 {
			t.Errorf("page holds %d <script elements", n)
		}
		if strings.Contains(page, "<img") {
			t.Error("a HELO name became an element")
		}
		esc := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`
		for _, want := range []string{
			`<td class="mono">203.0.113.66 (` + esc + `)</td>`, // client name
			`<td class="mono">&#34;&gt;&lt;img src=x&gt;</td>`, // HELO
			`<td class="mono">` + esc + `@evil.example</td>`,   // sender
		} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks the escaped %q", want)
			}
		}
		if !regexp.MustCompile(`<text [^>]*>203\.0\.113\.66 \(&lt;script&gt;`).MatchString(page) {
			t.Error("the chart label of the hostile client is not escaped text")
		}
	})
}

func TestHTMLQueries(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		fixture(t, d) // report_test.go: three days with known delays and triplets
		hist, err := DelayHistogram(ctx, d, time.Time{})
		// 300 s and 600 s, 14 h, and 100 passes of 1 to 100 s.
		want := []int64{100, 0, 1, 1, 0, 0, 0, 0, 1, 0}
		if err != nil || !reflect.DeepEqual(hist, want) {
			t.Errorf("histogram = %v, %v; want %v", hist, err, want)
		}
		never, err := NeverRetriedClients(ctx, d, time.Time{}, 10)
		wantNever := []NeverRetriedClient{
			{Client: "198.51.100.7", ClientName: "unknown", Helo: "helo.198.51.100.7", Sender: "spam@bad.example",
				Triplets: 1, Deferrals: 2, LastDeferred: at("2026-10-31 11:30")},
			{Client: "192.0.2.99", ClientName: "unknown", Helo: "helo.192.0.2.99", Sender: "x@example.biz",
				Triplets: 1, Deferrals: 1, LastDeferred: at("2026-11-01 08:00")},
		}
		if err != nil || !reflect.DeepEqual(never, wantNever) {
			t.Errorf("never retried = %v\n got %+v\nwant %+v", err, never, wantNever)
		}
		lists, err := DNSBLRejects(ctx, d, time.Time{})
		if want := []ReasonCount{{Reason: "", Count: 1}}; err != nil || !reflect.DeepEqual(lists, want) {
			t.Errorf("dnsbl rejects = %+v, %v; want %+v", lists, err, want)
		}
		counts, err := VerbCounts(ctx, d, at("2026-11-02 12:00"))
		if want := []VerbCount{{Day: "2026-11-02", Verb: "DUNNO", Count: 100}}; err != nil || !reflect.DeepEqual(counts, want) {
			t.Errorf("verb counts since Nov 2 = %+v, %v; want %+v", counts, err, want)
		}
		insertTriplet(t, d, tripletRow{client: "192.0.2.7", sender: "a@example.net", rcpt: "b@example.org",
			first: at("2026-11-01 10:00"), last: at("2026-11-01 10:01"), attempts: 2})
		insertTriplet(t, d, tripletRow{client: "192.0.2.8", sender: "c@example.net", rcpt: "b@example.org",
			first: at("2026-11-01 09:00"), last: at("2026-11-01 09:00"), attempts: 1})
		insertTriplet(t, d, tripletRow{client: "192.0.2.9", sender: "d@example.net", rcpt: "b@example.org",
			first: at("2026-11-01 08:00"), last: at("2026-11-01 08:10"), passed: at("2026-11-01 08:10"), attempts: 2, passes: 1})
		n, oldest, err := Pending(ctx, d, 1)
		wantOldest := []PendingTriplet{{Client: "192.0.2.8", Sender: "c@example.net", Recipient: "b@example.org",
			FirstSeen: at("2026-11-01 09:00"), Attempts: 1}}
		if err != nil || n != 2 || !reflect.DeepEqual(oldest, wantOldest) {
			t.Errorf("pending = %d, %+v, %v; want 2, %+v", n, oldest, err, wantOldest)
		}
	})
}

func TestListsOf(t *testing.T) {
	for reason, want := range map[string][]string{
		"listed zen.spamhaus.org (score 10)":                               {"zen.spamhaus.org"},
		"listed a.example,b.example; allowlisted list.dnswl.org (score 3)": {"a.example", "b.example"},
		"something else": {"something else"},
	} {
		if got := listsOf(reason); !reflect.DeepEqual(got, want) {
			t.Errorf("listsOf(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestChartHelpers(t *testing.T) {
	for _, tc := range []struct{ max, step int64 }{{0, 1}, {4, 1}, {7, 2}, {10, 2}, {11, 5}, {26, 10}, {480, 100}, {501, 200}} {
		if got := niceStep(tc.max); got != tc.step {
			t.Errorf("niceStep(%d) = %d, want %d", tc.max, got, tc.step)
		}
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1234: "1.2k", 45678: "45k", 2_500_000: "2.5M"} {
		if got := compact(n); got != want {
			t.Errorf("compact(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{7: "7", 1234: "1,234", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	if got := cut("ééééé", 4); got != "ééé…" {
		t.Errorf("cut = %q", got)
	}
	counts := []VerbCount{{Check: "greylist", Count: 50}, {Check: "helo", Count: 1}, {Check: "whitelist", Count: 2},
		{Check: "rbl2", Count: 9}, {Count: 100}}
	var names []string
	for _, s := range checkSeries([]string{"whitelist", "dnsbl", "greylist"}, counts) {
		names = append(names, s.Name)
	}
	if want := []string{"whitelist", "greylist", "rbl2", "helo", noCheck}; !reflect.DeepEqual(names, want) {
		t.Errorf("check series = %q, want %q", names, want)
	}
	if got := delayLabels(); got[0] != "0–2m" || got[6] != "1h–2h" || got[9] != "over 1d" {
		t.Errorf("delay labels = %q", got)
	}
}

// The handler renders at most once a minute and hides its errors.
func TestHTMLHandler(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	clk := clocktest.New(htmlNow)
	h := NewHandler(d, nil, nil)
	h.now = clk.Now
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/report", nil))
		if csp := rec.Header().Get("Content-Security-Policy"); rec.Code == 200 && !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("Content-Security-Policy = %q", csp)
		}
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || !strings.Contains(body, "No data yet") {
		t.Fatalf("empty store: %d %.200s", code, body)
	}
	week(t, d, false)
	if _, body := get(); !strings.Contains(body, "No data yet") {
		t.Error("a page younger than a minute was rendered again")
	}
	clk.Advance(handlerCache)
	if _, body := get(); !strings.Contains(body, `<svg id="chart-actions"`) {
		t.Error("a page a minute old was served again")
	}
	clk.Advance(handlerCache)
	d.Close()
	if code, body := get(); code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "report unavailable" {
		t.Errorf("closed store: %d %q", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.sem <- struct{}{} // a render in progress
	if _, err := h.render(ctx); err == nil {
		t.Error("a request that ended while waiting for a render got a page")
	}
}

// The by-action chart has a layer for every verb the decisions table
// allows, in either mode, so its days add up to report_daily's requests.
func TestActionLayersCountEveryVerb(t *testing.T) {
	days := []string{"2026-11-01"}
	var counts []VerbCount
	for _, verb := range []string{"DUNNO", "PREPEND", "WARN", "DEFER", "REJECT", "HOLD"} {
		for _, observe := range []bool{false, true} {
			counts = append(counts, VerbCount{Day: days[0], Verb: verb, Observe: observe, Count: 1})
		}
	}
	var total int64
	for _, s := range stack(days, counts, actionSeries(), actionOf) {
		total += s.Values[0]
	}
	if total != int64(len(counts)) {
		t.Errorf("the layers hold %d of %d requests", total, len(counts))
	}
}

// The page counts from the UTC day of its start: the summary's request
// count, its "passed after a delay" and the delay histogram beside it
// agree, and the summary says where they start.
func TestHTMLCountsWholeDays(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		morning := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		since := time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)
		req := &policy.Request{ClientAddress: netip.MustParseAddr("192.0.2.1"), Sender: "a@example.org"}
		rows := []decisionlog.Row{
			decisionlog.FromDecision(&policy.Decision{Time: morning, Req: req, Action: policy.DunnoAction,
				Delay: 5 * time.Minute}, "mx1"),
			decisionlog.FromDecision(&policy.Decision{Time: since.Add(time.Hour), Req: req, Action: policy.DunnoAction}, "mx1"),
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		p, err := gather(ctx, d, HTMLOptions{Since: since, Now: since.Add(2 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		hist, err := DelayHistogram(ctx, d, p.Since) // what the page's histogram shows
		if err != nil {
			t.Fatal(err)
		}
		var binned int64
		for _, v := range hist {
			binned += v
		}
		if p.Stats[0].Value != "2" || p.Stats[0].Note != "since 2026-03-01 00:00 UTC" {
			t.Errorf("summary: %s requests, %q; want 2, since 2026-03-01 00:00 UTC", p.Stats[0].Value, p.Stats[0].Note)
		}
		if p.Stats[3].Value != "1" || binned != 1 {
			t.Errorf("passed after a delay: %s in the summary, %d in the histogram; want 1 and 1", p.Stats[3].Value, binned)
		}
	})
}
