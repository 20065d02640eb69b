package main

import (
	"sync/atomic"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
)

// dnsblRun keeps the running dnsbl check's self-check (dnsbl/selfcheck.go)
// going across reloads: a reload that builds its steps starts the new
// check's probe and stops the old one's; a reload that fails leaves both
// the old check and its probe running.
type dnsblRun struct {
	built     *dnsbl.Checker // by the steps being built; nil: none
	running   atomic.Pointer[dnsbl.Checker]
	stopProbe func()
}

// commit makes the check just built the running one. The old probe stops
// before the new one starts, so their reports to
// mxpolicyd_dnsbl_list_healthy never interleave, and the gauge is cleared
// between them, so lists a reload removed drop out. check (readOnly)
// starts no probe.
func (r *dnsblRun) commit(w *wiring) {
	r.stop()
	w.metrics.DNSListHealth(nil)
	r.running.Store(r.built)
	if r.built != nil && !w.readOnly {
		r.stopProbe = r.built.StartSelfCheck(w.bg)
	}
}

func (r *dnsblRun) stop() {
	if r.stopProbe != nil {
		r.stopProbe()
		r.stopProbe = nil
	}
}

// health is /readyz's detail: each DNS list's self-check state, read from
// memory.
func (r *dnsblRun) health() []string {
	c := r.running.Load()
	if c == nil {
		return nil
	}
	var out []string
	for _, h := range c.Health() {
		out = append(out, "dnsbl "+h.String())
	}
	return out
}
