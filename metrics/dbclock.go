package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WatchDatabaseClock exports offset (db.DB.ClockOffset): how far the
// PostgreSQL server's clock is ahead of this host's. The daemon corrects
// the times it stores for it; a large value still means a clock to fix,
// since log lines and decision-log rows carry this host's time.
func (m *Metrics) WatchDatabaseClock(offset func() time.Duration) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "database_clock_offset_seconds",
		Help: "How far the PostgreSQL server's clock is ahead of this host's (negative: behind), measured every 2 s on the readiness probe. Stored times are corrected for it; log lines and decision-log rows are not.",
	}, func() float64 { return offset().Seconds() }))
}
