package report

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// FormatHTML is the one-page report with charts, for WriteHTML.
const FormatHTML = "html"

// HTMLOptions select what WriteHTML shows.
type HTMLOptions struct {
	Since time.Time // decisions from this instant's UTC day on (the page counts whole days); zero: all
	Now   time.Time // when the page is made, for ages; zero: time.Now()
	Top   int       // rows of each top list; 0: 15
	// Checks are the check names in the engine's order, from the daemon's
	// check table (cmd/mxpolicyd/checks.go); other checks follow as found.
	Checks []string
}

// WriteHTML writes the report as one self-contained HTML page: inline CSS
// and SVG, no script, nothing fetched.
func WriteHTML(ctx context.Context, d *db.DB, opt HTMLOptions, w io.Writer) error {
	p, err := gather(ctx, d, opt)
	if err != nil {
		return err
	}
	if err := pageTmpl.Execute(w, p); err != nil {
		return fmt.Errorf("report: write: %w", err)
	}
	return nil
}

// page is what the template draws. Charts are nil when they have no data.
type page struct {
	Now, Since    time.Time
	Empty         bool // no decision since Since
	Stats         []stat
	ByAction      *svgChart
	ByCheck       *svgChart
	ActionTable   dataTable
	Delays        *svgChart
	Retry         []RetryDelayRow
	Lists         *svgChart
	ListRows      []ReasonCount
	Never         *svgChart
	NeverRows     []NeverRetriedClient
	PendingCount  int64
	PendingOldest []PendingTriplet
	actions       []series // the layers of ByAction, for the summary
}

// stat is one figure of the summary row.
type stat struct{ Label, Value, Note string }

// dataTable is a chart's numbers, shown under it for screen readers and
// for exact values.
type dataTable struct {
	Cols []string
	Rows [][]string
}

// gather runs the page's queries, one after the other on one connection
// at a time, and lays out its charts.
func gather(ctx context.Context, d *db.DB, opt HTMLOptions) (*page, error) {
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	if opt.Top <= 0 {
		opt.Top = 15
	}
	if !opt.Since.IsZero() {
		// The per-day charts and the summary built from them count whole
		// UTC days; the histogram and the top lists count from the same
		// instant, so the page's figures agree with each other.
		opt.Since = dayStart(opt.Since)
	}
	p := &page{Now: opt.Now.UTC(), Since: opt.Since.UTC()}
	steps := []func(context.Context, *db.DB, HTMLOptions) error{
		p.decisions, p.delays, p.lists, p.never, p.pending,
	}
	for _, step := range steps {
		if err := step(ctx, d, opt); err != nil {
			return nil, err
		}
	}
	p.Stats = p.summary()
	return p, nil
}

// decisions fills the two per-day charts from the counts by verb and check.
func (p *page) decisions(ctx context.Context, d *db.DB, opt HTMLOptions) error {
	counts, err := VerbCounts(ctx, d, opt.Since)
	if err != nil {
		return err
	}
	p.Empty = len(counts) == 0
	if p.Empty {
		return nil
	}
	days := daysOf(counts)
	byAction := stack(days, counts, actionSeries(), actionOf)
	p.ByAction = stackedBars("chart-actions", "Decisions per day by action",
		"Requests per UTC day, stacked by what Postfix was told; observe-mode decisions by what enforcing would have answered.",
		days, byAction)
	p.ByCheck = stackedBars("chart-checks", "Decisions per day by check",
		"Requests per UTC day, stacked by the check that decided.",
		days, stack(days, counts, checkSeries(opt.Checks, counts), func(c VerbCount) string { return checkOf(c.Check) }))
	p.ActionTable, p.actions = dayTable(days, byAction), byAction
	return nil
}

// actionSeries are the layers of the by-action chart, from let through
// to refused: a layer for each verb the decisions table allows
// (docs/reporting.md, verb), so the chart counts every request.
func actionSeries() []series {
	return []series{
		{Name: "DUNNO", Color: colGreen}, {Name: "PREPEND", Color: colSky}, {Name: "WARN", Color: colYellow},
		{Name: "HOLD", Color: colGrey}, {Name: "DEFER", Color: colOrange}, {Name: "REJECT", Color: colRed},
		{Name: "would HOLD (observe)", Color: colBlack},
		{Name: "would DEFER (observe)", Color: colPurple}, {Name: "would REJECT (observe)", Color: colBlue},
	}
}

// actionOf names c's layer: its verb, or for a refusal or hold computed
// in observe mode, what would have been answered.
func actionOf(c VerbCount) string {
	if c.Observe && (c.Verb == "DEFER" || c.Verb == "REJECT" || c.Verb == "HOLD") {
		return "would " + c.Verb + " (observe)"
	}
	return c.Verb
}

const noCheck = "no decisive check"

func checkOf(name string) string {
	if name == "" {
		return noCheck
	}
	return name
}

// checkSeries are the checks that decided: those of order first, in
// that order (the engine's), then any other, busiest first; then the
// requests no check decided. The well-known checks keep their colour from
// page to page; any other takes the next spare one.
func checkSeries(order []string, counts []VerbCount) []series {
	colors := map[string]string{"whitelist": colGreen, "dnsbl": colRed, "spf": colBlue, "greylist": colOrange}
	spare := []string{colPurple, colYellow, colSky}
	totals := map[string]int64{}
	for _, c := range counts {
		if c.Check != "" {
			totals[c.Check] += c.Count
		}
	}
	rank := func(n string) int {
		if i := slices.Index(order, n); i >= 0 {
			return i
		}
		return len(order)
	}
	names := slices.Collect(maps.Keys(totals))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(totals[b], totals[a]), strings.Compare(a, b))
	})
	var out []series
	for _, n := range names {
		col, ok := colors[n]
		if !ok {
			col, spare = spare[0], append(spare[1:], spare[0])
		}
		out = append(out, series{Name: n, Color: col})
	}
	return append(out, series{Name: noCheck, Color: colGrey})
}

// daysOf lists every UTC day from the first to the last of counts, so a
// day without decisions shows as a gap.
func daysOf(counts []VerbCount) []string {
	first, _ := time.Parse(time.DateOnly, counts[0].Day)
	last, _ := time.Parse(time.DateOnly, counts[len(counts)-1].Day)
	var days []string
	for t := first; !t.After(last); t = t.AddDate(0, 0, 1) {
		days = append(days, t.Format(time.DateOnly))
	}
	return days
}

// stack sums counts into the series layerOf names, one value per day.
func stack(days []string, counts []VerbCount, ss []series, layerOf func(VerbCount) string) []series {
	for i := range ss {
		ss[i].Values = make([]int64, len(days))
	}
	for _, c := range counts {
		di := slices.Index(days, c.Day)
		si := slices.IndexFunc(ss, func(s series) bool { return s.Name == layerOf(c) })
		if di >= 0 && si >= 0 {
			ss[si].Values[di] += c.Count
		}
	}
	return ss
}

// dayTable is a day per row, a column per series that occurs, and the total.
func dayTable(days []string, ss []series) dataTable {
	t := dataTable{Cols: []string{"day"}}
	var used []series
	for _, s := range ss {
		if maxOf(s.Values) > 0 {
			used = append(used, s)
			t.Cols = append(t.Cols, s.Name)
		}
	}
	t.Cols = append(t.Cols, "total")
	for i, day := range days {
		row, total := []string{day}, int64(0)
		for _, s := range used {
			row = append(row, thousands(s.Values[i]))
			total += s.Values[i]
		}
		t.Rows = append(t.Rows, append(row, thousands(total)))
	}
	return t
}

// delayLabels name the bins of delayBuckets.
func delayLabels() []string {
	var out []string
	lo := "0"
	for _, b := range delayBuckets {
		hi := shortDuration(b)
		out = append(out, lo+"–"+hi)
		lo = hi
	}
	return append(out, "over "+lo)
}

// shortDuration is 2m, 1h or 1d.
func shortDuration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}

func (p *page) delays(ctx context.Context, d *db.DB, opt HTMLOptions) error {
	hist, err := DelayHistogram(ctx, d, opt.Since)
	if err != nil {
		return err
	}
	if p.Retry, err = RetryDelay(ctx, d, opt.Since); err != nil {
		return err
	}
	if maxOf(hist) > 0 {
		p.Delays = histogram("chart-delays", "Retry delay of legitimate senders",
			"Greylisting passes after a delay, by how long the sender took to come back.",
			"time from the first deferral to the pass", delayLabels(), hist, colBlue)
	}
	return nil
}

// lists counts DNS list rejections per list. A rejection names every
// list that scored (dnsbl/score.go, scoreCard.reason: "listed a,b; ...
// (score N)"), so one rejection counts for each list it names.
func (p *page) lists(ctx context.Context, d *db.DB, opt HTMLOptions) error {
	rs, err := DNSBLRejects(ctx, d, opt.Since)
	if err != nil {
		return err
	}
	per := map[string]int64{}
	for _, r := range rs {
		for _, l := range listsOf(r.Reason) {
			per[l] += r.Count
		}
	}
	for l, n := range per {
		p.ListRows = append(p.ListRows, ReasonCount{Reason: l, Count: n})
	}
	slices.SortFunc(p.ListRows, func(a, b ReasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Reason, b.Reason))
	})
	p.ListRows = p.ListRows[:min(len(p.ListRows), opt.Top)]
	if len(p.ListRows) > 0 {
		labels, values := make([]string, len(p.ListRows)), make([]int64, len(p.ListRows))
		for i, r := range p.ListRows {
			labels[i], values[i] = r.Reason, r.Count
		}
		p.Lists = barList("chart-lists", "Top rejecting DNS lists",
			"Requests rejected by the DNS list check, per list that scored.", labels, values, colRed, "rejections")
	}
	return nil
}

// listsOf reads the list names out of a DNSBL reason; a reason in another
// shape counts as a whole.
func listsOf(reason string) []string {
	s, ok := strings.CutPrefix(reason, "listed ")
	if !ok {
		return []string{reason}
	}
	if i := strings.IndexAny(s, "; ("); i >= 0 {
		s = s[:i]
	}
	return strings.Split(s, ",")
}

func (p *page) never(ctx context.Context, d *db.DB, opt HTMLOptions) error {
	rows, err := NeverRetriedClients(ctx, d, opt.Since, opt.Top)
	if err != nil || len(rows) == 0 {
		return err
	}
	p.NeverRows = rows
	labels, values := make([]string, len(rows)), make([]int64, len(rows))
	for i, r := range rows {
		labels[i], values[i] = clientLabel(r.Client, r.ClientName), r.Triplets
	}
	p.Never = barList("chart-never", "Top clients deferred and never retried",
		"Client addresses by how many of their greylisted triplets never came back.", labels, values, colOrange, "triplets")
	return nil
}

// clientLabel is "192.0.2.1 (mail.example.net)", or the address alone
// when the client had no verified name.
func clientLabel(addr, name string) string {
	if name == "" || name == "unknown" {
		return addr
	}
	return addr + " (" + name + ")"
}

func (p *page) pending(ctx context.Context, d *db.DB, opt HTMLOptions) error {
	n, oldest, err := Pending(ctx, d, min(opt.Top, 10))
	p.PendingCount, p.PendingOldest = n, oldest
	return err
}

// summary is the row of figures at the top of the page.
func (p *page) summary() []stat {
	var total, deferred, rejected, delayed int64
	for _, s := range p.actions {
		n := sum(s.Values)
		total += n
		switch s.Name {
		case "DEFER":
			deferred = n
		case "REJECT":
			rejected = n
		}
	}
	for _, r := range p.Retry {
		delayed += r.Passes
	}
	pending := stat{Label: "pending triplets", Value: thousands(p.PendingCount), Note: "none waiting"}
	if len(p.PendingOldest) > 0 {
		pending.Note = "the oldest waiting for " + p.OldestAge()
	}
	return []stat{
		{Label: "requests", Value: thousands(total), Note: "since " + p.SinceText()},
		{Label: "deferred", Value: thousands(deferred), Note: percent(deferred, total) + " of requests"},
		{Label: "rejected", Value: thousands(rejected), Note: percent(rejected, total) + " of requests"},
		{Label: "passed after a delay", Value: thousands(delayed), Note: "legitimate senders that retried"},
		pending,
	}
}

func sum(vs []int64) int64 {
	var n int64
	for _, v := range vs {
		n += v
	}
	return n
}

func percent(n, of int64) string {
	if of == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// age prints a duration in its largest unit or two: 45s, 12m, 3h 20m, 2d 4h.
func age(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// OldestAge is how long the oldest pending triplet has waited.
func (p *page) OldestAge() string {
	if len(p.PendingOldest) == 0 {
		return ""
	}
	return age(p.Now.Sub(p.PendingOldest[0].FirstSeen))
}

// SinceText is where the page starts, for its header.
func (p *page) SinceText() string {
	if p.Since.IsZero() || p.Since.Year() < 2 {
		return "the first record"
	}
	return p.Since.Format("2006-01-02 15:04") + " UTC"
}
