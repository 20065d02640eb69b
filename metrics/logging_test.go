package metrics

import "testing"

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
	wantExposition(t, m, want, "mxpolicyd_log_records_dropped_total")
	var none *Metrics
	none.LogRecordsDropped(1) // a nil *Metrics records nothing
}
