package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestResolverHealth(t *testing.T) {
	m := New()
	if got := testutil.ToFloat64(m.resolverMetrics.healthy); got != 1 {
		t.Fatalf("a new resolver gauge reads %v, want 1 until a failure says otherwise", got)
	}
	m.ResolverFailure()
	m.ResolverFailure()
	m.ResolverHealthy(false)
	if got := testutil.ToFloat64(m.resolverMetrics.healthy); got != 0 {
		t.Fatalf("healthy = %v after ResolverHealthy(false)", got)
	}
	if got := testutil.ToFloat64(m.resolverMetrics.failures); got != 2 {
		t.Fatalf("failures = %v, want 2", got)
	}
	m.ResolverHealthy(true)
	if got := testutil.ToFloat64(m.resolverMetrics.healthy); got != 1 {
		t.Fatalf("healthy = %v after ResolverHealthy(true)", got)
	}
	var nilM *Metrics
	nilM.ResolverFailure()
	nilM.ResolverHealthy(false)
}
