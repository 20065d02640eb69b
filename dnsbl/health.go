package dnsbl

import (
	"sync"
	"time"
)

// Observer receives what metrics need; *metrics.Metrics implements it.
// Calls must not block: they happen on the request path. list is always
// the display name, never the zone.
type Observer interface {
	// DNSQuery reports one query sent to the resolver: its time and its
	// error (nil for an answer, listed or not: NXDOMAIN is "not listed").
	DNSQuery(list string, dur time.Duration, err error)
	// DNSCacheHit reports a lookup answered from the cache.
	DNSCacheHit(list string)
	// DNSPaused reports that a list is skipped for pause_for after failures.
	DNSPaused(list string)
	// DNSListHealth reports, after each self-check probe, the verdict on
	// every list with one (selfcheck.go): true while it passes its test
	// points. The map is the whole set, so a list gone after a reload
	// drops out; lists opted out or never conclusively probed are absent.
	DNSListHealth(healthy map[string]bool)
	// DNSLists reports the lists of a check as it is built (New), so that
	// their counters exist from the start: a counter first seen at 1 shows
	// no increase in Prometheus, and an alert on it would miss the first
	// pause.
	DNSLists(names []string)
}

type nopObserver struct{}

func (nopObserver) DNSQuery(string, time.Duration, error) {}
func (nopObserver) DNSCacheHit(string)                    {}
func (nopObserver) DNSPaused(string)                      {}
func (nopObserver) DNSListHealth(map[string]bool)         {}
func (nopObserver) DNSLists([]string)                     {}

// zoneState is what all entries of one zone share: the display name used
// for metrics and the failure count that pauses the zone (a circuit
// breaker, after postfwd's dns_timeout_max and SpamAssassin's
// dns_block_time).
type zoneState struct {
	zone string
	name string

	mu          sync.Mutex
	fails       int
	pausedUntil time.Time

	selfCheck selfCheckState
}

func (z *zoneState) paused(now time.Time) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return now.Before(z.pausedUntil)
}

// record counts a success or failure and reports whether this failure
// started a pause. The count is not reset by a pause, so a list that fails
// again right after one is paused again at once (half-open breaker).
func (z *zoneState) record(ok bool, now time.Time, after int, pauseFor time.Duration) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	if ok {
		z.fails = 0
		return false
	}
	z.fails++
	if z.fails < after || now.Before(z.pausedUntil) || pauseFor == 0 {
		return false
	}
	z.pausedUntil = now.Add(pauseFor)
	return true
}
