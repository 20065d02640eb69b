package contrib

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// family is what a query can use of one exported metric family.
type family struct {
	typ    string // COUNTER, GAUGE, HISTOGRAM, ...
	labels map[string]bool
}

// exportedFamilies scrapes a real metrics.New() through the metrics
// server's handler after every hook has run once: a labelled vector is
// exposed only once it has a child, so an untouched hook would hide its
// metric.
func exportedFamilies(t *testing.T) map[string]family {
	t.Helper()
	m := metrics.New()
	fail := errors.New("down")
	m.Record(&policy.Decision{Check: "greylist", Action: policy.DunnoAction, Reason: "passed before",
		Duration: time.Millisecond, Timings: []policy.CheckTiming{{Check: "spf"}},
		Errors: []policy.CheckError{{Check: "spf", Err: fail}}})
	m.DNSQuery("zen", time.Millisecond, fail)
	m.DNSCacheHit("zen")
	m.DNSPaused("zen")
	m.DNSListHealth(map[string]bool{"zen": false})
	m.RateLimitHit("stolen-login")
	m.StoreOp("greylist_decide", time.Millisecond, fail)
	m.ConnOpened()
	m.ConnEvicted()
	m.ConnRefused(policy.RefusedNotAllowed)
	m.LogRowsWritten(1)
	m.LogRowsDropped(1)
	m.LogRecordsDropped(1)
	m.ResolverFailure()
	m.ResolverHealthy(false)
	m.WatchDatabaseClock(func() time.Duration { return 0 })
	cfg := metrics.DefaultConfig()
	rec := httptest.NewRecorder()
	metrics.NewServer(cfg, m, nil, nil).Handler().ServeHTTP(rec, httptest.NewRequest("GET", cfg.Path, nil))
	if rec.Code != 200 {
		t.Fatalf("GET %s: %d", cfg.Path, rec.Code)
	}
	return parseExposition(rec.Body.String())
}

var exposedLabel = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)="`)

// parseExposition reads the text exposition format (Prometheus docs,
// "Exposition formats"): # TYPE lines name the families, sample lines
// carry the labels. A histogram's samples are its _bucket, _sum and _count.
func parseExposition(text string) map[string]family {
	out := map[string]family{}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok {
				out[name] = family{typ: strings.ToUpper(typ), labels: map[string]bool{}}
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		f, ok := resolveFamily(name, out)
		if !ok {
			continue
		}
		labels, _, _ = strings.Cut(labels, "}")
		for _, m := range exposedLabel.FindAllStringSubmatch(labels, -1) {
			if m[1] != "le" && m[1] != "quantile" {
				f.labels[m[1]] = true
			}
		}
	}
	return out
}

// PromQL keywords that take a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// PromQL keywords that are neither metric nor function names.
var promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true}

// promqlRefs is a small PromQL tokenizer (no parser: the prometheus module
// is far too heavy a dependency for this): it returns the metric names an
// expression selects and the label names it matches on or groups by.
// Strings, range selectors ([5m], [$__rate_interval]), function names (an
// identifier followed by "(") and aggregations (followed by "by" or
// "without") are skipped.
func promqlRefs(expr string) (names, labels []string) {
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(s, i)
		case c == '[':
			i = skipPast(s, i, ']')
		case c == '{':
			end := skipPast(s, i, '}')
			labels = append(labels, matcherLabels(s[i+1:end-1])...)
			i = end
		case c == '$' || isDigit(c):
			i = skipWord(s, i+1) // a Grafana variable, a number or a duration
		case isIdentStart(c):
			end := skipWord(s, i)
			word, next := s[i:end], nextNonSpace(s, end)
			switch {
			case labelListKeywords[word] && next < len(s) && s[next] == '(':
				close := skipPast(s, next, ')')
				for _, l := range strings.Split(s[next+1:close-1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						labels = append(labels, l)
					}
				}
				end = close
			case promqlKeywords[word], labelListKeywords[word], next < len(s) && s[next] == '(':
				// a keyword, or a function or aggregation: sum(...)
			case labelListKeywords[s[next:skipWord(s, next)]]:
				// an aggregation with its grouping first: sum by (x) (...)
			default:
				names = append(names, word)
			}
			i = end
		default:
			i++
		}
	}
	return names, labels
}

var matcher = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)`)

// matcherLabels are the label names in the inside of {...}.
func matcherLabels(s string) []string {
	var out []string
	for _, part := range splitOutsideStrings(s) {
		if m := matcher.FindStringSubmatch(part); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// splitOutsideStrings splits a matcher list at commas that are not quoted.
func splitOutsideStrings(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		switch s[i] {
		case '"', '\'', '`':
			i = skipString(s, i)
		case ',':
			out = append(out, s[start:i])
			i++
			start = i
		default:
			i++
		}
	}
	return append(out, s[start:])
}

func skipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return len(s)
}

func skipPast(s string, i int, c byte) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '"', '\'', '`':
			j = skipString(s, j) - 1
		case c:
			return j + 1
		}
	}
	return len(s)
}

func skipWord(s string, i int) int {
	for i < len(s) && (isIdentStart(s[i]) || isDigit(s[i]) || s[i] == '.') {
		i++
	}
	return i
}

func nextNonSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	return i
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scrapeSeries are series Prometheus itself adds to every target
// (Prometheus docs, "Jobs and instances"), and the labels it attaches.
var (
	scrapeSeries = map[string]bool{"up": true}
	targetLabels = map[string]bool{"job": true, "instance": true}
)

// checkExpr checks that every metric an expression names is one the daemon
// exports (a histogram's _bucket, _sum and _count included) and every label
// it matches on or groups by is one of those metrics' labels.
func checkExpr(t *testing.T, where, expr string, exported map[string]family) {
	t.Helper()
	names, labels := promqlRefs(expr)
	if len(names) == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
	known := maps(targetLabels)
	for _, n := range names {
		f, ok := resolveFamily(n, exported)
		switch {
		case ok:
			for l := range f.labels {
				known[l] = true
			}
			if strings.HasSuffix(n, "_bucket") {
				known["le"] = true
			}
		case !scrapeSeries[n]:
			t.Errorf("%s: %s is not a metric mxpolicyd exports (expr %q)", where, n, expr)
		}
	}
	for _, l := range labels {
		if !known[l] {
			t.Errorf("%s: label %q is on none of %v (expr %q)", where, l, names, expr)
		}
	}
}

func resolveFamily(name string, exported map[string]family) (family, bool) {
	if f, ok := exported[name]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if f, found := exported[base]; ok && found && (f.typ == "HISTOGRAM" || (f.typ == "SUMMARY" && suffix != "_bucket")) {
			return f, true
		}
	}
	return family{}, false
}

func maps(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// dashboard is the part of Grafana's dashboard JSON model the checks read
// (Grafana docs, "JSON model"; "Export and import" for __inputs).
type dashboard struct {
	Inputs []struct {
		Name, Type, PluginID string
	} `json:"__inputs"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource *datasource     `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasource struct{ Type, UID string }

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// dsInput is the datasource input a shared dashboard names, so that import
// asks which Prometheus to use instead of assuming a datasource uid.
const dsInput = "${DS_PROMETHEUS}"

// labelValues is Grafana's Prometheus template query
// label_values(selector, label) (Grafana docs, "Prometheus template
// variables"); it is not PromQL.
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

func TestGrafanaDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal([]byte(readFile(t, "grafana/mxpolicyd.json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want both set and a current schema (>= 36)", d.UID, d.Title, d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || "${"+d.Inputs[0].Name+"}" != dsInput || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs %+v: want one prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	exported := exportedFamilies(t)
	for _, v := range d.Templating.List {
		checkDatasource(t, "variable "+v.Name, v.Datasource)
		checkTemplateQuery(t, v.Name, v.Query, exported)
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range flatten(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d is not unique", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v is outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		checkDatasource(t, "panel "+p.Title, p.Datasource)
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkDatasource(t, "panel "+p.Title+" query "+tg.RefID, tg.Datasource)
			checkExpr(t, "panel "+p.Title, tg.Expr, exported)
			names, _ := promqlRefs(tg.Expr)
			for _, n := range names {
				f, _ := strings.CutSuffix(n, "_bucket")
				used[f] = true
			}
		}
	}
	var missing []string
	for name := range exported {
		if strings.HasPrefix(name, "mxpolicyd_") && !used[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no panel shows %v: add one to contrib/grafana/mxpolicyd.json", missing)
	}
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

func checkDatasource(t *testing.T, where string, ds *datasource) {
	t.Helper()
	if ds == nil || ds.Type != "prometheus" || ds.UID != dsInput {
		t.Errorf("%s: datasource %+v, want prometheus %s", where, ds, dsInput)
	}
}

// checkTemplateQuery checks a query variable's label_values(...): the query
// is a string in older models and {"query": "..."} in current ones.
func checkTemplateQuery(t *testing.T, name string, raw json.RawMessage, exported map[string]family) {
	t.Helper()
	var q string
	if json.Unmarshal(raw, &q) != nil {
		var obj struct{ Query string }
		if err := json.Unmarshal(raw, &obj); err != nil {
			t.Fatalf("variable %s: query %s: %v", name, raw, err)
		}
		q = obj.Query
	}
	m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
	if m == nil {
		t.Errorf("variable %s: query %q: want label_values(selector, label)", name, q)
		return
	}
	checkExpr(t, "variable "+name, m[1]+`{`+m[2]+`=""}`, exported)
}

// TestPromQLRefs keeps the tokenizer honest on the shapes the dashboard
// and the rules use.
func TestPromQLRefs(t *testing.T) {
	for _, tc := range []struct {
		expr          string
		names, labels []string
	}{
		{`up{job="mxpolicyd"} == 0`, []string{"up"}, []string{"job"}},
		{`histogram_quantile(0.99, sum by (check, le) (rate(mxpolicyd_check_duration_seconds_bucket{job=~"$job", instance=~"a,b"}[$__rate_interval])))`,
			[]string{"mxpolicyd_check_duration_seconds_bucket"}, []string{"check", "le", "job", "instance"}},
		{"sum by (job) (rate(a_total[5m]))\n  / on (job) group_left\nsum(rate(b_total{x!=\"}\"}[5m])) > 0.05",
			[]string{"a_total", "b_total"}, []string{"job", "job", "x"}},
		{`min(x) and bool y offset 1h`, []string{"x", "y"}, nil},
	} {
		names, labels := promqlRefs(tc.expr)
		if !slices.Equal(names, tc.names) || !slices.Equal(labels, tc.labels) {
			t.Errorf("%q: names %v labels %v, want %v %v", tc.expr, names, labels, tc.names, tc.labels)
		}
	}
}
