package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/asynclog"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/policy/policytest"
	"github.com/mxpolicyd/mxpolicyd/replies"
)

// The observer interfaces of the packages that report to metrics (hooks.go):
// *Metrics implements each one directly.
var (
	_ policy.Recorder      = (*Metrics)(nil)
	_ policy.ConnObserver  = (*Metrics)(nil)
	_ dnsbl.Observer       = (*Metrics)(nil)
	_ greylist.Observer    = (*Metrics)(nil)
	_ decisionlog.Observer = (*Metrics)(nil)
	_ resolver.Observer    = (*Metrics)(nil)
	_ asynclog.Observer    = (*Metrics)(nil)
	_ replies.Observer     = (*Metrics)(nil)
)

// wantExposition fails the test unless m's registry exposes the metrics
// names exactly as want, in the Prometheus text format.
func wantExposition(t *testing.T, m *Metrics, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

// wantValue fails the test unless the one metric c collects reads want.
func wantValue(t *testing.T, c prometheus.Collector, want float64, what string) {
	t.Helper()
	if got := testutil.ToFloat64(c); got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func mustAction(t *testing.T, s string) policy.Action {
	t.Helper()
	a, err := policy.ParseAction(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

// sample decisions covering every branch of Record.
func sampleDecisions(t *testing.T) []*policy.Decision {
	return []*policy.Decision{
		{Action: mustAction(t, "REJECT listed"), Check: "dnsbl", Reason: "listed zen.spamhaus.org",
			Duration: 3 * time.Millisecond,
			Timings:  []policy.CheckTiming{{Check: "whitelist", Duration: time.Microsecond}, {Check: "dnsbl", Duration: 2 * time.Millisecond}}},
		{Action: mustAction(t, "550 5.7.23 SPF fail"), Check: "spf", Reason: "fail",
			Duration: 20 * time.Millisecond},
		{Action: policy.DunnoAction, Would: mustAction(t, "DEFER_IF_PERMIT 4.2.0 Greylisted"), Observe: true,
			Check: "greylist", Reason: "new triplet", Duration: time.Second},
		// spf timed out and failed open; the request passed.
		{Action: policy.DunnoAction, Reason: "", Duration: 2 * time.Second,
			Errors: []policy.CheckError{{Check: "spf", Err: fmt.Errorf("spf: %w", timeoutErr{}), Kind: policy.ErrorTimeout}}},
		// greylist store down with on_error DEFER_IF_PERMIT: decisive, not fail-open.
		{Action: mustAction(t, "DEFER_IF_PERMIT 4.3.0 try later"), Check: "greylist", Reason: "greylist failed",
			Errors: []policy.CheckError{{Check: "greylist", Err: errors.New("store down"), Kind: policy.ErrorTemporary}}},
	}
}

// decisionsHead is the HELP and TYPE lines of the decision counter's
// exposition.
const decisionsHead = `
# HELP mxpolicyd_decisions_total Policy decisions by mode (enforce or observe), action class (dunno, prepend, warn, defer, reject, hold), deciding check and reason. In observe mode action is what enforcing would have answered.
# TYPE mxpolicyd_decisions_total counter`

func TestRecordCountsDecisions(t *testing.T) {
	m := New()
	for _, d := range sampleDecisions(t) {
		m.Record(d)
	}
	want := decisionsHead + `
mxpolicyd_decisions_total{action="defer",check="greylist",mode="enforce",reason="greylist failed"} 1
mxpolicyd_decisions_total{action="defer",check="greylist",mode="observe",reason="new triplet"} 1
mxpolicyd_decisions_total{action="dunno",check="none",mode="enforce",reason="none"} 1
mxpolicyd_decisions_total{action="reject",check="dnsbl",mode="enforce",reason="listed zen.spamhaus.org"} 1
mxpolicyd_decisions_total{action="reject",check="spf",mode="enforce",reason="fail"} 1
# HELP mxpolicyd_check_errors_total Checks that failed, by kind (timeout, temporary or permanent).
# TYPE mxpolicyd_check_errors_total counter
mxpolicyd_check_errors_total{check="greylist",kind="temporary"} 1
mxpolicyd_check_errors_total{check="spf",kind="timeout"} 1
# HELP mxpolicyd_fail_open_total Check failures answered as if the check had passed (on_error: DUNNO).
# TYPE mxpolicyd_fail_open_total counter
mxpolicyd_fail_open_total{check="spf"} 1
`
	wantExposition(t, m, want, "mxpolicyd_decisions_total", "mxpolicyd_check_errors_total", "mxpolicyd_fail_open_total")
	if got := histCount(t, m, "mxpolicyd_decision_duration_seconds", ""); got != 5 {
		t.Errorf("decision_duration_seconds count = %d, want 5", got)
	}
	if got := histCount(t, m, "mxpolicyd_check_duration_seconds", "dnsbl"); got != 1 {
		t.Errorf("check_duration_seconds{check=dnsbl} count = %d, want 1", got)
	}
	if got := histSum(t, m, "mxpolicyd_decision_duration_seconds"); got < 3.02 || got > 3.024 {
		t.Errorf("decision_duration_seconds sum = %v, want 3.023", got)
	}
}

// histCount returns the observation count of a histogram series whose
// only label value is label ("" for an unlabelled histogram).
func histCount(t *testing.T, m *Metrics, name, label string) uint64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if label == "" || (len(s.GetLabel()) == 1 && s.GetLabel()[0].GetValue() == label) {
				return s.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func histSum(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	t.Fatalf("%s not found", name)
	return 0
}

func TestHooks(t *testing.T) {
	m := New()
	m.DNSQuery("zen", 5*time.Millisecond, nil)
	m.DNSQuery("zen", 5*time.Millisecond, context.DeadlineExceeded)
	m.DNSQuery("zen", time.Millisecond, errors.New("SERVFAIL"))
	m.DNSCacheHit("zen")
	var obs dnsbl.Observer = m
	obs.DNSCacheHit("zen")
	obs.DNSQuery("spamcop", time.Millisecond, nil)
	obs.DNSPaused("zen")
	obs.DNSPaused("zen")
	m.StoreOp("greylist", time.Millisecond, nil)
	m.StoreOp("greylist", time.Millisecond, errors.New("conn refused"))
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.LogRowsWritten(7)
	m.LogRowsDropped(2)
	m.LogRowsDropped(-1) // ignored: counters never go down
	want := `
# HELP mxpolicyd_dns_queries_total DNS queries sent, by list.
# TYPE mxpolicyd_dns_queries_total counter
mxpolicyd_dns_queries_total{list="spamcop"} 1
mxpolicyd_dns_queries_total{list="zen"} 3
# HELP mxpolicyd_dns_errors_total DNS queries that failed, by list and kind (timeout or error). NXDOMAIN is an answer, not an error.
# TYPE mxpolicyd_dns_errors_total counter
mxpolicyd_dns_errors_total{kind="error",list="zen"} 1
mxpolicyd_dns_errors_total{kind="timeout",list="zen"} 1
# HELP mxpolicyd_dns_cache_hits_total DNS list lookups answered from the cache, by list.
# TYPE mxpolicyd_dns_cache_hits_total counter
mxpolicyd_dns_cache_hits_total{list="zen"} 2
# HELP mxpolicyd_dns_list_pauses_total Times a list was paused (skipped for a while) after repeated failures, by list.
# TYPE mxpolicyd_dns_list_pauses_total counter
mxpolicyd_dns_list_pauses_total{list="zen"} 2
# HELP mxpolicyd_store_errors_total Greylisting store operations that failed, by operation.
# TYPE mxpolicyd_store_errors_total counter
mxpolicyd_store_errors_total{op="greylist"} 1
# HELP mxpolicyd_connections_open Postfix connections currently open.
# TYPE mxpolicyd_connections_open gauge
mxpolicyd_connections_open 1
# HELP mxpolicyd_connections_total Postfix connections accepted.
# TYPE mxpolicyd_connections_total counter
mxpolicyd_connections_total 2
# HELP mxpolicyd_decision_log_rows_written_total Decision log rows written to the store.
# TYPE mxpolicyd_decision_log_rows_written_total counter
mxpolicyd_decision_log_rows_written_total 7
# HELP mxpolicyd_decision_log_rows_dropped_total Decision log rows dropped because the writer fell behind or failed.
# TYPE mxpolicyd_decision_log_rows_dropped_total counter
mxpolicyd_decision_log_rows_dropped_total 2
`
	names := []string{"mxpolicyd_dns_queries_total", "mxpolicyd_dns_errors_total", "mxpolicyd_dns_cache_hits_total",
		"mxpolicyd_dns_list_pauses_total", "mxpolicyd_store_errors_total", "mxpolicyd_connections_open",
		"mxpolicyd_connections_total", "mxpolicyd_decision_log_rows_written_total", "mxpolicyd_decision_log_rows_dropped_total"}
	wantExposition(t, m, want, names...)
	if got := histCount(t, m, "mxpolicyd_store_duration_seconds", "greylist"); got != 2 {
		t.Errorf("store_duration_seconds{op=greylist} count = %d, want 2", got)
	}
	if got := testutil.ToFloat64(m.conns); got != 1 {
		t.Errorf("connections_open = %v, want 1", got)
	}
}

// A nil *Metrics is the "metrics not wired" value; every hook must accept it.
func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Record(sampleDecisions(t)[0])
	m.DNSQuery("zen", time.Millisecond, errors.New("x"))
	m.DNSCacheHit("zen")
	m.DNSPaused("zen")
	m.StoreOp("greylist", time.Millisecond, nil)
	m.ConnOpened()
	m.ConnClosed()
	m.LogRowsWritten(1)
	m.LogRowsDropped(1)
	m.RateLimitHit("per-user")
	m.DNSLists([]string{"zen"})
	m.RateLimitRules([]string{"per-user"})
}

// The lists and rules a check is built with have their counters from the
// start, at 0, so an alert's increase() sees the first pause or hit
// (contrib/prometheus/mxpolicyd.rules.yml).
func TestKnownSeriesStartAtZero(t *testing.T) {
	m := New()
	m.DNSLists([]string{"zen", "dbl"})
	m.RateLimitRules([]string{"stolen-login"})
	for name, want := range map[string]int{
		"mxpolicyd_dns_list_pauses_total": 2, "mxpolicyd_dns_queries_total": 2,
		"mxpolicyd_dns_cache_hits_total": 2, "mxpolicyd_ratelimit_hits_total": 1,
	} {
		if n, err := testutil.GatherAndCount(m.reg, name); err != nil || n != want {
			t.Errorf("%s: %d series, %v; want %d at 0", name, n, err, want)
		}
	}
	if got := testutil.ToFloat64(m.dnsPauses.WithLabelValues("zen")); got != 0 {
		t.Errorf("pauses of zen: %v, want 0", got)
	}
}

// allNames is every metric this package defines; the lint test fails if
// one is missing, so a rename cannot slip past the dashboards unnoticed.
var allNames = []string{
	"mxpolicyd_decisions_total", "mxpolicyd_decision_duration_seconds", "mxpolicyd_check_duration_seconds",
	"mxpolicyd_check_errors_total", "mxpolicyd_fail_open_total", "mxpolicyd_dns_queries_total",
	"mxpolicyd_dns_query_duration_seconds", "mxpolicyd_dns_errors_total", "mxpolicyd_dns_cache_hits_total",
	"mxpolicyd_dns_list_pauses_total", "mxpolicyd_store_duration_seconds", "mxpolicyd_store_errors_total",
	"mxpolicyd_connections_open", "mxpolicyd_connections_total",
	"mxpolicyd_decision_log_rows_written_total", "mxpolicyd_decision_log_rows_dropped_total",
	"mxpolicyd_log_records_dropped_total", "mxpolicyd_dnsbl_list_healthy",
	"mxpolicyd_ratelimit_hits_total", "mxpolicyd_replies_recorded_total", "mxpolicyd_replies_matched_total",
}

func TestMetricNamesFollowConventions(t *testing.T) {
	m := New()
	for _, d := range sampleDecisions(t) {
		m.Record(d)
	}
	m.DNSQuery("zen", time.Millisecond, errors.New("x"))
	m.DNSCacheHit("zen")
	m.DNSPaused("zen")
	m.DNSListHealth(map[string]bool{"zen": true})
	m.StoreOp("greylist", time.Millisecond, errors.New("x"))
	m.RateLimitHit("per-user")
	m.ReplyRecorded()
	m.ReplyMatched()
	m.ConnOpened()
	m.LogRowsWritten(1)
	m.LogRowsDropped(1)
	n, err := testutil.GatherAndCount(m.reg, allNames...)
	if err != nil {
		t.Fatal(err)
	}
	if n < len(allNames) {
		t.Errorf("gathered %d series of %d metrics: some metric is missing", n, len(allNames))
	}
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	for _, name := range allNames {
		if strings.Contains(name, "duration") && !strings.HasSuffix(name, "_seconds") {
			t.Errorf("%s: durations are in seconds", name)
		}
	}
}

func TestReasonLabelIsBounded(t *testing.T) {
	var r reasonSet
	for i := range maxReasonsPerCheck {
		if got, want := r.label("greylist", fmt.Sprint("reason ", i)), fmt.Sprint("reason ", i); got != want {
			t.Fatalf("label(%q) = %q before the cap", want, got)
		}
	}
	if got := r.label("greylist", "one too many"); got != "other" {
		t.Errorf("reason past the cap = %q, want other", got)
	}
	if got := r.label("greylist", "reason 3"); got != "reason 3" {
		t.Errorf("known reason after the cap = %q, want it kept", got)
	}
	if got := r.label("dnsbl", "listed zen"); got != "listed zen" {
		t.Errorf("another check's cap is separate, got %q", got)
	}
	if got := r.label("dnsbl", strings.Repeat("x", maxReasonLen+1)); got != "other" {
		t.Errorf("long reason = %q, want other", got)
	}
	if got := r.label("dnsbl", "bad \xff utf-8"); got != "other" {
		t.Errorf("invalid UTF-8 reason = %q, want other", got)
	}
	if got := r.label("dnsbl", ""); got != "none" {
		t.Errorf("empty reason = %q, want none", got)
	}
}

// The action label is the action's class (policy.Action.Class), the word
// the decision log stores too: every deferral is "defer", however spelt,
// and an action Wire would send as DUNNO counts as dunno.
func TestActionLabelIsTheClass(t *testing.T) {
	for in, class := range policytest.ActionClasses() {
		want := string(class)
		a := mustAction(t, in)
		if got := actionCount(t, a, want); got != 1 {
			t.Errorf("%q: %v decisions labelled %q, want 1", in, got, want)
		}
		if got := decisionlog.Verb(a); got != strings.ToUpper(want) {
			t.Errorf("%q: decision log verb %s, metrics label %s: not the same class", in, got, want)
		}
	}
	for _, a := range []policy.Action{{Verb: "OK"}, {}} {
		if got := actionCount(t, a, "dunno"); got != 1 {
			t.Errorf("%#v: %v decisions labelled dunno, want 1", a, got)
		}
	}
}

// actionCount records one decision answered a and returns how many
// decisions carry the action label.
func actionCount(t *testing.T, a policy.Action, label string) float64 {
	t.Helper()
	m := New()
	m.Record(&policy.Decision{Action: a, Check: "x", Reason: "r"})
	return testutil.ToFloat64(m.decisions.WithLabelValues("enforce", label, "x", "r"))
}
