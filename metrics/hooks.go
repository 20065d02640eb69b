package metrics

import (
	"context"
	"errors"
	"time"
)

// The hooks below are for the packages that do the work. Each is safe on a
// nil *Metrics, so a package can be used (and tested) without metrics.

// DNSQuery records one DNS query for list and how it ended. Pass a nil err
// for any answer, NXDOMAIN included: "not listed" is not a failure.
func (m *Metrics) DNSQuery(list string, dur time.Duration, err error) {
	if m == nil {
		return
	}
	m.dnsQueries.WithLabelValues(list).Inc()
	m.dnsDur.WithLabelValues(list).Observe(dur.Seconds())
	if err != nil {
		m.dnsErrors.WithLabelValues(list, errKind(err)).Inc()
	}
}

// DNSCacheHit records a list lookup answered without a query.
func (m *Metrics) DNSCacheHit(list string) {
	if m == nil {
		return
	}
	m.dnsCacheHits.WithLabelValues(list).Inc()
}

// DNSPaused records that list was paused: skipped for a while after
// repeated failures.
func (m *Metrics) DNSPaused(list string) {
	if m == nil {
		return
	}
	m.dnsPauses.WithLabelValues(list).Inc()
}

// DNSObserver adapts m to dnsbl.Observer.
type DNSObserver struct{ M *Metrics }

// Query records one list lookup, from the cache or sent to the resolver.
func (o DNSObserver) Query(list string, cached bool, err error, dur time.Duration) {
	if cached {
		o.M.DNSCacheHit(list)
		return
	}
	o.M.DNSQuery(list, dur, err)
}

// Paused records that list was paused.
func (o DNSObserver) Paused(list string) { o.M.DNSPaused(list) }

// StoreOp records one store operation and whether it failed: op is
// "greylist_decide" (cmd/mxpolicyd's timedStore) or "ping" (/readyz).
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

// errKind classifies an error for the kind label: timeouts (deadlines,
// network timeouts) apart from everything else.
func errKind(err error) string {
	var t interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &t) && t.Timeout()) {
		return "timeout"
	}
	return "error"
}
