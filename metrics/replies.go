package metrics

import "github.com/prometheus/client_golang/prometheus"

// repliesMetrics count what the replies check (replies/) learns and
// uses: pairs recorded from authenticated mail, and inbound replies that
// skipped greylisting. *Metrics implements replies.Observer with them;
// its store timings go to StoreOp like greylisting's.
type repliesMetrics struct {
	recorded prometheus.Counter
	matched  prometheus.Counter
}

func (m *Metrics) registerRepliesMetrics() {
	m.repliesMetrics.recorded = m.counter("replies_recorded_total",
		"Recipients of SASL-authenticated mail recorded (or refreshed) as correspondents of the sender.")
	m.repliesMetrics.matched = m.counter("replies_matched_total",
		"Inbound messages recognized as replies to a local user's mail, which skipped greylisting.")
}

// ReplyRecorded counts one pair recorded or refreshed.
func (m *Metrics) ReplyRecorded() {
	if m == nil {
		return
	}
	m.repliesMetrics.recorded.Inc()
}

// ReplyMatched counts one reply that skipped greylisting.
func (m *Metrics) ReplyMatched() {
	if m == nil {
		return
	}
	m.repliesMetrics.matched.Inc()
}
