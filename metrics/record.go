package metrics

import (
	"sync"
	"unicode/utf8"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

var (
	_ policy.Recorder     = (*Metrics)(nil)
	_ policy.ConnObserver = (*Metrics)(nil)
)

// Record counts one decision; it implements policy.Recorder. It only
// updates in-memory counters, so it never blocks the reply.
func (m *Metrics) Record(d *policy.Decision) {
	if m == nil || d == nil {
		return
	}
	mode, act := "enforce", d.Action
	if d.Observe {
		mode, act = "observe", d.Would
	}
	check := orNone(d.Check)
	m.decisions.WithLabelValues(mode, string(act.Class()), check,
		m.reasons.label(check, d.Reason)).Inc()
	m.decisionDur.Observe(d.Duration.Seconds())
	for _, t := range d.Timings {
		m.checkDur.WithLabelValues(t.Check).Observe(t.Duration.Seconds())
	}
	for _, e := range d.Errors {
		m.recordError(d, e)
	}
}

// recordError counts a failed check. The engine names the failed check as
// the decider only when its on_error action was decisive; any other failure
// was passed over, which is a fail-open answer for that check.
func (m *Metrics) recordError(d *policy.Decision, e policy.CheckError) {
	m.checkErrors.WithLabelValues(e.Check, string(e.Kind)).Inc()
	if d.Check != e.Check {
		m.failOpen.WithLabelValues(e.Check).Inc()
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Label bounds for the reason label. Checks are asked for short, stable
// reasons ("new triplet", "listed zen.spamhaus.org"); these limits stop a
// reason that carries client data from growing the series without bound.
const (
	maxReasonsPerCheck = 32
	maxReasonLen       = 64
)

// reasonSet admits the first maxReasonsPerCheck distinct reasons of each
// check as label values and maps every later one to "other".
type reasonSet struct {
	mu   sync.Mutex
	seen map[string]map[string]bool
}

func (r *reasonSet) label(check, reason string) string {
	if reason == "" {
		return "none"
	}
	if len(reason) > maxReasonLen || !utf8.ValidString(reason) {
		return "other"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = make(map[string]map[string]bool)
	}
	s := r.seen[check]
	if s == nil {
		s = make(map[string]bool)
		r.seen[check] = s
	}
	if !s[reason] && len(s) >= maxReasonsPerCheck {
		return "other"
	}
	s[reason] = true
	return reason
}
