package dnsbl

import (
	"sync"
	"time"
)

// Observer receives what metrics need. Calls must not block: they happen
// on the request path. list is always the display name, never the zone.
type Observer interface {
	// Query reports one lookup: answered from the cache, or sent to the
	// resolver with its error (nil for an answer, listed or not) and time.
	Query(list string, cached bool, err error, dur time.Duration)
	// Paused reports that a list is skipped for pause_for after failures.
	Paused(list string)
}

type nopObserver struct{}

func (nopObserver) Query(string, bool, error, time.Duration) {}
func (nopObserver) Paused(string)                            {}

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
