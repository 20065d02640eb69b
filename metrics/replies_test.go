package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRepliesCounters(t *testing.T) {
	m := New()
	m.ReplyRecorded()
	m.ReplyRecorded()
	m.ReplyMatched()
	if got := testutil.ToFloat64(m.repliesMetrics.recorded); got != 2 {
		t.Errorf("recorded = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.repliesMetrics.matched); got != 1 {
		t.Errorf("matched = %v, want 1", got)
	}
	var none *Metrics
	none.ReplyRecorded() // a nil *Metrics records nothing
	none.ReplyMatched()
}
