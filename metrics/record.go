package metrics

import (
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxpolicyd/mxpolicyd/policy"
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
	m.reasons.counter(m.decisions, decisionKey{mode, string(act.Class()), orNone(d.Check), d.Reason}).Inc()
	m.decisionDur.Observe(d.Duration.Seconds())
	for _, t := range d.Timings {
		m.reasons.timer(m.checkDur, t.Check).Observe(t.Duration.Seconds())
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
// check as label values and maps every later one to "other". It also
// keeps the series Record adds to, looked up once: a decision then costs
// one map lookup under a read lock instead of the label bounding and
// CounterVec.WithLabelValues, which hashes every label value each time
// (prometheus/client_golang, "MetricVec"). At most maxCachedSeries are
// kept, since reasons that map to "other" are still keys here; beyond
// that Record takes the uncached way.
type reasonSet struct {
	mu   sync.Mutex
	seen map[string]map[string]bool

	cacheMu  sync.RWMutex
	counters map[decisionKey]prometheus.Counter // by the decision's reason, not its label
	timers   map[string]prometheus.Observer     // check_duration_seconds by check
	hits     map[string]prometheus.Counter      // dns_cache_hits_total by list
}

// decisionKey is a decision as Record counts it: mode, action class,
// check and the reason as the check gave it.
type decisionKey struct{ mode, class, check, reason string }

const maxCachedSeries = 4096

// counter returns the decisions_total counter of k from vec.
func (r *reasonSet) counter(vec *prometheus.CounterVec, k decisionKey) prometheus.Counter {
	return cachedSeries(&r.cacheMu, &r.counters, k, func() prometheus.Counter {
		return vec.WithLabelValues(k.mode, k.class, k.check, r.label(k.check, k.reason))
	})
}

// timer returns the check_duration_seconds observer of check from vec.
// Check names come from the check table, so they are few.
func (r *reasonSet) timer(vec *prometheus.HistogramVec, check string) prometheus.Observer {
	return cachedSeries(&r.cacheMu, &r.timers, check, func() prometheus.Observer {
		return vec.WithLabelValues(check)
	})
}

// cacheHit returns the DNS list cache hit counter of list from vec. List
// names come from the configuration, so they are few; every cached answer
// of every request counts one.
func (r *reasonSet) cacheHit(vec *prometheus.CounterVec, list string) prometheus.Counter {
	return cachedSeries(&r.cacheMu, &r.hits, list, func() prometheus.Counter {
		return vec.WithLabelValues(list)
	})
}

// cachedSeries returns the series of k from cache, or the one lookup
// makes, which cache keeps while it holds fewer than maxCachedSeries. mu
// guards cache; lookup runs outside it.
func cachedSeries[K comparable, S any](mu *sync.RWMutex, cache *map[K]S, k K, lookup func() S) S {
	mu.RLock()
	s, ok := (*cache)[k]
	mu.RUnlock()
	if ok {
		return s
	}
	s = lookup()
	mu.Lock()
	defer mu.Unlock()
	if *cache == nil {
		*cache = make(map[K]S)
	}
	if len(*cache) < maxCachedSeries {
		(*cache)[k] = s
	}
	return s
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
