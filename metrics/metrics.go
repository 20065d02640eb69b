// Package metrics exposes what mxpolicyd does to Prometheus: decisions,
// latencies, DNS list and store health, connections and the decision log.
// It owns a private registry, so tests and several instances never share
// state through the global one.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "mxpolicyd"

// latencyBuckets span a cached answer (sub-millisecond) to Postfix's
// 10 s policy timeout, which no request should approach.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics holds every collector. Create it always, serve it only when
// configured: recording costs little and keeps callers free of branches.
// A nil *Metrics records nothing, so packages may accept one optionally.
type Metrics struct {
	reg *prometheus.Registry

	decisions    *prometheus.CounterVec
	decisionDur  prometheus.Histogram
	checkDur     *prometheus.HistogramVec
	checkErrors  *prometheus.CounterVec
	failOpen     *prometheus.CounterVec
	dnsQueries   *prometheus.CounterVec
	dnsDur       *prometheus.HistogramVec
	dnsErrors    *prometheus.CounterVec
	dnsCacheHits *prometheus.CounterVec
	dnsPauses    *prometheus.CounterVec
	storeDur     *prometheus.HistogramVec
	storeErrors  *prometheus.CounterVec
	conns        prometheus.Gauge
	connsTotal   prometheus.Counter
	logRows      prometheus.Counter
	logRowsDrop  prometheus.Counter
	reasons      reasonSet
	connMetrics
	resolverMetrics
	logMetrics
	rateLimitMetrics
	repliesMetrics
	dnsblHealthMetrics
}

// New returns metrics registered on a fresh registry together with the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	m.decisionMetrics()
	m.dnsMetrics()
	m.serverMetrics()
	m.registerConnMetrics()
	m.registerResolverMetrics()
	m.registerLogMetrics()
	m.registerRateLimitMetrics()
	m.registerRepliesMetrics()
	m.registerDNSBLHealthMetrics()
	return m
}

func (m *Metrics) decisionMetrics() {
	m.decisions = m.counterVec("decisions_total",
		"Policy decisions by mode (enforce or observe), action class (dunno, prepend, warn, defer, reject, hold), deciding check and reason. In observe mode action is what enforcing would have answered.",
		"mode", "action", "check", "reason")
	m.decisionDur = m.histogram("decision_duration_seconds",
		"Time to decide one policy request, all checks included.")
	m.checkDur = m.histogramVec("check_duration_seconds",
		"Time one check took within a request.", "check")
	m.checkErrors = m.counterVec("check_errors_total",
		"Checks that failed, by kind (timeout, temporary or permanent).", "check", "kind")
	m.failOpen = m.counterVec("fail_open_total",
		"Check failures answered as if the check had passed (on_error: DUNNO).", "check")
}

func (m *Metrics) dnsMetrics() {
	m.dnsQueries = m.counterVec("dns_queries_total",
		"DNS queries sent, by list.", "list")
	m.dnsDur = m.histogramVec("dns_query_duration_seconds",
		"DNS query latency, by list.", "list")
	m.dnsErrors = m.counterVec("dns_errors_total",
		"DNS queries that failed, by list and kind (timeout or error). NXDOMAIN is an answer, not an error.", "list", "kind")
	m.dnsCacheHits = m.counterVec("dns_cache_hits_total",
		"DNS list lookups answered from the cache, by list.", "list")
	m.dnsPauses = m.counterVec("dns_list_pauses_total",
		"Times a list was paused (skipped for a while) after repeated failures, by list.", "list")
}

func (m *Metrics) serverMetrics() {
	m.storeDur = m.histogramVec("store_duration_seconds",
		"Greylisting store operation latency, by operation.", "op")
	m.storeErrors = m.counterVec("store_errors_total",
		"Greylisting store operations that failed, by operation.", "op")
	m.conns = m.gauge("connections_open", "Postfix connections currently open.")
	m.connsTotal = m.counter("connections_total", "Postfix connections accepted.")
	m.logRows = m.counter("decision_log_rows_written_total",
		"Decision log rows written to the store.")
	m.logRowsDrop = m.counter("decision_log_rows_dropped_total",
		"Decision log rows dropped because the writer fell behind or failed.")
}

func (m *Metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	m.reg.MustRegister(g)
	return g
}

func (m *Metrics) histogram(name, help string) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: name, Help: help, Buckets: latencyBuckets})
	m.reg.MustRegister(h)
	return h
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: name, Help: help, Buckets: latencyBuckets}, labels)
	m.reg.MustRegister(h)
	return h
}
