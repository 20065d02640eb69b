package metrics

import "testing"

func TestResolverHealth(t *testing.T) {
	m := New()
	wantValue(t, m.resolverMetrics.healthy, 1, "a new resolver gauge, until a failure says otherwise")
	m.ResolverFailure()
	m.ResolverFailure()
	m.ResolverHealthy(false)
	wantValue(t, m.resolverMetrics.healthy, 0, "healthy after ResolverHealthy(false)")
	wantValue(t, m.resolverMetrics.failures, 2, "failures")
	m.ResolverHealthy(true)
	wantValue(t, m.resolverMetrics.healthy, 1, "healthy after ResolverHealthy(true)")
	var nilM *Metrics
	nilM.ResolverFailure()
	nilM.ResolverHealthy(false)
}
