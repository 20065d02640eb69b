package metrics

import "github.com/prometheus/client_golang/prometheus"

// resolverMetrics show whether our own DNS resolver (dns.server) answers.
// A resolver that is down turns every SPF check into checks.spf.on_error
// and every DNS list into "not listed"; these say so before the decision
// counts do. *Metrics implements resolver.Observer with them.
type resolverMetrics struct {
	healthy  prometheus.Gauge
	failures prometheus.Counter
}

func (m *Metrics) registerResolverMetrics() {
	m.resolverMetrics.healthy = m.gauge("resolver_healthy",
		"1 while the configured DNS resolver answers, 0 after several queries in a row got no response.")
	m.resolverMetrics.failures = m.counter("resolver_transport_failures_total",
		"DNS queries that got no response at all from the configured resolver (timeout, refused, network error). SERVFAIL and NXDOMAIN are responses.")
	m.resolverMetrics.healthy.Set(1)
}

// ResolverFailure counts one query that got no response from the resolver.
func (m *Metrics) ResolverFailure() {
	if m == nil {
		return
	}
	m.resolverMetrics.failures.Inc()
}

// ResolverHealthy sets the resolver health gauge.
func (m *Metrics) ResolverHealthy(ok bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	m.resolverMetrics.healthy.Set(v)
}
