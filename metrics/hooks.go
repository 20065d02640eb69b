package metrics

import (
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// The hooks below are for the packages that do the work. Each package
// declares the one small Observer interface it calls (dnsbl.Observer,
// greylist.Observer, decisionlog.Observer, resolver.Observer,
// asynclog.Observer; policy.Recorder and policy.ConnObserver for the
// engine and the server), and *Metrics implements each directly, with no
// adapters. Each hook is safe on a nil *Metrics, so a package can be used
// (and tested) without metrics.

// DNSQuery records one DNS query for list and how it ended. Pass a nil err
// for any answer, NXDOMAIN included: "not listed" is not a failure.
func (m *Metrics) DNSQuery(list string, dur time.Duration, err error) {
	if m == nil {
		return
	}
	m.dnsQueries.WithLabelValues(list).Inc()
	m.dnsDur.WithLabelValues(list).Observe(dur.Seconds())
	if err != nil {
		m.dnsErrors.WithLabelValues(list, dnsErrKind(err)).Inc()
	}
}

// DNSCacheHit records a list lookup answered without a query.
func (m *Metrics) DNSCacheHit(list string) {
	if m == nil {
		return
	}
	m.reasons.cacheHit(m.dnsCacheHits, list).Inc()
}

// DNSLists starts each list's query, cache-hit and pause counters at 0
// (Prometheus, "Instrumentation", avoid missing metrics): an alert's
// increase() then sees the first pause.
func (m *Metrics) DNSLists(names []string) {
	if m == nil {
		return
	}
	for _, n := range names {
		m.dnsQueries.WithLabelValues(n)
		m.dnsCacheHits.WithLabelValues(n)
		m.dnsPauses.WithLabelValues(n)
	}
}

// DNSPaused records that list was paused: skipped for a while after
// repeated failures.
func (m *Metrics) DNSPaused(list string) {
	if m == nil {
		return
	}
	m.dnsPauses.WithLabelValues(list).Inc()
}

// StoreOp records one store operation and whether it failed: op is the
// calling package's name for it (greylist.OpDecide, ratelimit.OpTake and
// OpNetworks, replies.OpRecord and OpMatch) or "ping" (/readyz).
// The decision log has its own hooks, LogRowsWritten and LogRowsDropped.
func (m *Metrics) StoreOp(op string, dur time.Duration, err error) {
	if m == nil {
		return
	}
	m.storeDur.WithLabelValues(op).Observe(dur.Seconds())
	if err != nil {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// ConnOpened counts a Postfix connection accepted; pair with ConnClosed.
func (m *Metrics) ConnOpened() {
	if m == nil {
		return
	}
	m.connsTotal.Inc()
	m.conns.Inc()
}

// ConnClosed counts a Postfix connection ended.
func (m *Metrics) ConnClosed() {
	if m == nil {
		return
	}
	m.conns.Dec()
}

// LogRowsWritten counts decision log rows stored.
func (m *Metrics) LogRowsWritten(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.logRows.Add(float64(n))
}

// LogRowsDropped counts decision log rows lost: the writer's queue was full
// or the store refused them.
func (m *Metrics) LogRowsDropped(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.logRowsDrop.Add(float64(n))
}

// dnsErrKind classifies a DNS error for the kind label: timeouts
// (policy.IsTimeout) apart from everything else.
func dnsErrKind(err error) string {
	if policy.IsTimeout(err) {
		return "timeout"
	}
	return "error"
}
