package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

// wiring builds the checks from the config in the engine's fixed order:
// whitelist, dnsbl, spf, greylist (README, "How a decision is made").
// Long-lived parts (the store, DNS caches, the whitelist snapshot) are made
// once; reload rebuilds only what the file may change.
type wiring struct {
	log     *slog.Logger
	db      *db.DB
	metrics *metrics.Metrics
	closers []func()

	whitelist *whitelist.Whitelist
	dnsbl     *dnsbl.Checker
	spf       *spf.Checker
}

// newWiring builds the long-lived checks. Background work (the whitelist
// poll) runs until close.
func newWiring(ctx context.Context, cfg *config.Config, logger *slog.Logger, store *db.DB, m *metrics.Metrics) (*wiring, error) {
	w := &wiring{log: logger, db: store, metrics: m}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.closers = append(w.closers, cancel)
	wl, err := whitelist.New(ctx, cfg.Whitelist, whitelist.Options{Store: whitelist.NewStore(store, nil), Logger: logger})
	if err != nil {
		return nil, err
	}
	w.whitelist = wl
	go wl.Run(bg)
	if err := w.buildDNS(cfg); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// buildDNS makes the resolver and the checks that use it: one DNS setting
// feeds both the lists and SPF.
func (w *wiring) buildDNS(cfg *config.Config) error {
	r, err := resolver.New(cfg.DNS)
	if err != nil {
		return err
	}
	var obs dnsbl.Observer
	if w.metrics != nil {
		obs = metrics.DNSObserver{M: w.metrics}
	}
	bl, err := dnsbl.New(cfg.DNSBL, r, dnsbl.Options{Logger: w.log, Now: time.Now, Observer: obs})
	if err != nil {
		return err
	}
	sp, err := spf.New(cfg.SPF, r, spf.Options{Logger: w.log})
	if err != nil {
		return err
	}
	w.dnsbl, w.spf = bl, sp
	return nil
}

// steps returns the engine steps for cfg, each with its timeout and
// failure action from the checks section.
func (w *wiring) steps(cfg *config.Config) ([]policy.Step, error) {
	var out []policy.Step
	for _, c := range w.checks(cfg) {
		s := cfg.Checks[c.Name()]
		onErr, err := policy.ParseAction(s.OnError)
		if err != nil {
			return nil, fmt.Errorf("checks.%s.on_error: %w", c.Name(), err)
		}
		out = append(out, policy.Step{Check: c, Timeout: s.Timeout, OnError: onErr})
	}
	return out, nil
}

// checks lists the enabled checks in order.
func (w *wiring) checks(cfg *config.Config) []policy.Check {
	all := []policy.Check{w.whitelist}
	if len(cfg.DNSBL.Lists) > 0 {
		all = append(all, w.dnsbl)
	}
	all = append(all, w.spf)
	var on []policy.Check
	for _, c := range all {
		if cfg.Checks[c.Name()].On() {
			on = append(on, c)
		}
	}
	return on
}

func (w *wiring) recorders() []policy.Recorder { return nil }

// reload applies what a SIGHUP may change: whitelist files, list settings.
func (w *wiring) reload(ctx context.Context, cfg *config.Config) error {
	if err := w.whitelist.Reconfigure(cfg.Whitelist); err != nil {
		return err
	}
	return w.buildDNS(cfg)
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}
