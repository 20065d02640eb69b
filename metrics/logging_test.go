package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxpolicyd/mxpolicyd/internal/asynclog"
)

var _ asynclog.Observer = (*Metrics)(nil)

func TestLogRecordsDropped(t *testing.T) {
	m := New()
	m.LogRecordsDropped(3)
	m.LogRecordsDropped(0)
	m.LogRecordsDropped(-1) // ignored: counters never go down
	want := `
# HELP mxpolicyd_log_records_dropped_total Log records dropped because the log sink (stderr) was stuck or failing.
# TYPE mxpolicyd_log_records_dropped_total counter
mxpolicyd_log_records_dropped_total 3
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "mxpolicyd_log_records_dropped_total"); err != nil {
		t.Fatal(err)
	}
	var none *Metrics
	none.LogRecordsDropped(1) // a nil *Metrics records nothing
}
