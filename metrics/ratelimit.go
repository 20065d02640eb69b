package metrics

import "github.com/prometheus/client_golang/prometheus"

// rateLimitMetrics count the requests rate-limit rules found over their
// limit, by rule: a distinct_networks rule's series is the
// compromised-account signal an alert keys on. *Metrics implements
// ratelimit.Observer with them (and StoreOp, for the counters' store).
type rateLimitMetrics struct {
	hits *prometheus.CounterVec
}

func (m *Metrics) registerRateLimitMetrics() {
	m.rateLimitMetrics.hits = m.counterVec("ratelimit_hits_total",
		"Requests a rate-limit rule found over its limit, by rule (ratelimit.rules[].name); observe rules included.",
		"rule")
}

// RateLimitRules starts each rule's hit counter at 0 (Prometheus,
// "Instrumentation", avoid missing metrics): an alert's increase() then
// sees the first hit.
func (m *Metrics) RateLimitRules(names []string) {
	if m == nil {
		return
	}
	for _, n := range names {
		m.rateLimitMetrics.hits.WithLabelValues(n)
	}
}

// RateLimitHit counts one request over rule's limit.
func (m *Metrics) RateLimitHit(rule string) {
	if m == nil {
		return
	}
	m.rateLimitMetrics.hits.WithLabelValues(rule).Inc()
}
