package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/policy"
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
	return w, nil
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
	return []policy.Check{w.whitelist}
}

func (w *wiring) recorders() []policy.Recorder { return nil }

// reload applies what a SIGHUP may change: whitelist files, list settings.
func (w *wiring) reload(ctx context.Context, cfg *config.Config) error {
	return w.whitelist.Reconfigure(cfg.Whitelist)
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}
