package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/policy"
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
}

func newWiring(ctx context.Context, cfg *config.Config, logger *slog.Logger, store *db.DB, m *metrics.Metrics) (*wiring, error) {
	w := &wiring{log: logger, db: store, metrics: m}
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
	return nil
}

func (w *wiring) recorders() []policy.Recorder { return nil }

func (w *wiring) reload(ctx context.Context, cfg *config.Config) error { return nil }

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}
