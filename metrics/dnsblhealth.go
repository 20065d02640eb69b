package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// dnsblHealthMetrics show the DNS lists' self-check (dnsbl/selfcheck.go,
// RFC 5782 §5 test points): a list that fails it is ignored until it
// passes again. *Metrics implements dnsbl.Observer's DNSListHealth with it.
type dnsblHealthMetrics struct {
	mu      sync.Mutex // one report replaces the whole set
	healthy *prometheus.GaugeVec
}

func (m *Metrics) registerDNSBLHealthMetrics() {
	m.dnsblHealthMetrics.healthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "dnsbl_list_healthy",
		Help: "1 while a DNS list passes its self-check (RFC 5782 §5 test points), 0 while it fails it and is ignored, by list. Lists opted out (self_check: false) or not yet probed are absent.",
	}, []string{"list"})
	m.reg.MustRegister(m.dnsblHealthMetrics.healthy)
}

// DNSListHealth sets the gauge for every list in healthy and drops the
// lists not in it: those of a config replaced by a reload.
func (m *Metrics) DNSListHealth(healthy map[string]bool) {
	if m == nil {
		return
	}
	h := &m.dnsblHealthMetrics
	h.mu.Lock()
	defer h.mu.Unlock()
	h.healthy.Reset()
	for list, ok := range healthy {
		v := 0.0
		if ok {
			v = 1
		}
		h.healthy.WithLabelValues(list).Set(v)
	}
}
