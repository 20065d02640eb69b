package metrics

import (
	"testing"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

func TestConnEvictionsAndRefusals(t *testing.T) {
	m := New()
	var obs policy.ConnObserver = m
	obs.ConnEvicted()
	obs.ConnEvicted()
	obs.ConnRefused(policy.RefusedMaxConns)
	want := `
# HELP mxpolicyd_connections_evicted_total Idle Postfix connections closed to admit a new one at max_connections or when file descriptors ran out.
# TYPE mxpolicyd_connections_evicted_total counter
mxpolicyd_connections_evicted_total 2
# HELP mxpolicyd_connections_refused_total Connections closed on arrival, by reason (not_allowed, max_connections with every connection busy).
# TYPE mxpolicyd_connections_refused_total counter
mxpolicyd_connections_refused_total{reason="max_connections"} 1
mxpolicyd_connections_refused_total{reason="not_allowed"} 0
`
	wantExposition(t, m, want, "mxpolicyd_connections_evicted_total", "mxpolicyd_connections_refused_total")
	var nilM *Metrics
	nilM.ConnEvicted()
	nilM.ConnRefused(policy.RefusedNotAllowed)
}
