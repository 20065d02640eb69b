package metrics

import "testing"

func TestRepliesCounters(t *testing.T) {
	m := New()
	m.ReplyRecorded()
	m.ReplyRecorded()
	m.ReplyMatched()
	wantValue(t, m.repliesMetrics.recorded, 2, "recorded")
	wantValue(t, m.repliesMetrics.matched, 1, "matched")
	var none *Metrics
	none.ReplyRecorded() // a nil *Metrics records nothing
	none.ReplyMatched()
}
