package metrics

import "github.com/prometheus/client_golang/prometheus"

// logMetrics count what the daemon's own log loses: records dropped by
// internal/asynclog when the log sink (stderr) is stuck or failing.
type logMetrics struct {
	recordsDropped prometheus.Counter
}

func (m *Metrics) registerLogMetrics() {
	m.logMetrics.recordsDropped = m.counter("log_records_dropped_total",
		"Log records dropped because the log sink (stderr) was stuck or failing.")
}

// LogRecordsDropped counts log records lost; it makes *Metrics an
// asynclog.Observer.
func (m *Metrics) LogRecordsDropped(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.logMetrics.recordsDropped.Add(float64(n))
}
