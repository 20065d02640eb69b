package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// connMetrics count what the policy server does at its connection cap and
// allow list; ConnOpened and ConnClosed keep the gauges in serverMetrics.
type connMetrics struct {
	evicted prometheus.Counter
	refused *prometheus.CounterVec
}

func (m *Metrics) registerConnMetrics() {
	m.connMetrics.evicted = m.counter("connections_evicted_total",
		"Idle Postfix connections closed to admit a new one at max_connections or when file descriptors ran out.")
	m.connMetrics.refused = m.counterVec("connections_refused_total",
		"Connections closed on arrival, by reason (not_allowed, max_connections with every connection busy).",
		"reason")
	// Both series exist from the start, so a rate over them is defined.
	for _, r := range []string{policy.RefusedNotAllowed, policy.RefusedMaxConns} {
		m.connMetrics.refused.WithLabelValues(r)
	}
}

// ConnEvicted counts an idle connection closed to make room for another.
func (m *Metrics) ConnEvicted() {
	if m == nil {
		return
	}
	m.connMetrics.evicted.Inc()
}

// ConnRefused counts a connection closed on arrival; reason is one of
// policy's Refused constants.
func (m *Metrics) ConnRefused(reason string) {
	if m == nil {
		return
	}
	m.connMetrics.refused.WithLabelValues(reason).Inc()
}
