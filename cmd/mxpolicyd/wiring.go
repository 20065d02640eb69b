package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/greylist"
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

	readOnly  bool // for check: evaluate, write nothing
	whitelist *whitelist.Whitelist
	dnsbl     *dnsbl.Checker
	spf       *spf.Checker
	greylist  *greylist.Greylist
	declog    *decisionlog.Writer
}

// newWiring builds the long-lived checks. Background work (the whitelist
// poll) runs until close.
func newWiring(ctx context.Context, cfg *config.Config, logger *slog.Logger, store *db.DB, m *metrics.Metrics, readOnly bool) (*wiring, error) {
	w := &wiring{log: logger, db: store, metrics: m, readOnly: readOnly}
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
	if err := w.buildGreylist(cfg); err != nil {
		w.close()
		return nil, err
	}
	if cfg.DecisionLog.Enabled && !readOnly {
		w.startDecisionLog(ctx, cfg)
	}
	return w, nil
}

// buildGreylist makes the greylisting check; read-only for check.
func (w *wiring) buildGreylist(cfg *config.Config) error {
	gc := cfg.Greylist
	if gc.Hostname == "" {
		gc.Hostname = cfg.Hostname
	}
	newCheck := greylist.New
	if w.readOnly {
		newCheck = greylist.NewReadOnly
	}
	store := greylist.NewStore(w.db)
	if w.metrics != nil && !w.readOnly {
		store = timedStore{store, w.metrics}
	}
	g, err := newCheck(gc, store, w.log)
	if err != nil {
		return err
	}
	w.greylist = g
	return nil
}

// startDecisionLog starts the writer that records decisions in batches,
// off the reply path; close flushes it.
func (w *wiring) startDecisionLog(ctx context.Context, cfg *config.Config) {
	// While the database is not ready, serve's store preparation makes them.
	_, err := decisionlog.EnsurePartitions(ctx, w.db, time.Now(), cfg.DecisionLog.PartitionsAhead)
	if err != nil && !errors.Is(err, db.ErrUnavailable) {
		w.log.Warn("decision log: creating partitions failed; rows go to the default partition", "err", err)
	}
	opt := decisionlog.Options{Host: cfg.Hostname, Logger: w.log}
	if w.metrics != nil {
		opt.Observer = w.metrics
	}
	w.declog = decisionlog.New(w.db, cfg.DecisionLog, opt)
	w.closers = append(w.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.declog.Close(ctx); err != nil {
			w.log.Warn("decision log: flush at shutdown failed", "err", err)
		}
	})
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
		r.SetObserver(w.metrics) // mxpolicyd_resolver_healthy
	}
	bl, err := dnsbl.New(cfg.DNSBL, r, dnsbl.Options{Logger: w.log, Now: time.Now, Observer: obs})
	if err != nil {
		return err
	}
	sc := cfg.SPF
	if sc.Receiver == "" {
		sc.Receiver = cfg.Hostname // one host name for every header we add
	}
	sp, err := spf.New(sc, r, spf.Options{Logger: w.log})
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
	all = append(all, w.spf, w.greylist)
	var on []policy.Check
	for _, c := range all {
		if cfg.Checks[c.Name()].On() {
			on = append(on, c)
		}
	}
	return on
}

func (w *wiring) recorders() []policy.Recorder {
	if w.declog == nil {
		return nil
	}
	return []policy.Recorder{w.declog}
}

// reload applies what a SIGHUP may change: whitelist files, list settings.
func (w *wiring) reload(ctx context.Context, cfg *config.Config) error {
	if err := w.whitelist.Reconfigure(cfg.Whitelist); err != nil {
		return err
	}
	if err := w.buildDNS(cfg); err != nil {
		return err
	}
	return w.buildGreylist(cfg)
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// timedStore reports the greylist store's latency and errors to metrics
// (mxpolicyd_store_duration_seconds, mxpolicyd_store_errors_total).
type timedStore struct {
	greylist.Store
	m *metrics.Metrics
}

func (t timedStore) Decide(ctx context.Context, now time.Time, cfg *greylist.Config, k greylist.Key) (greylist.Outcome, error) {
	start := time.Now()
	out, err := t.Store.Decide(ctx, now, cfg, k)
	t.m.StoreOp("greylist_decide", time.Since(start), err)
	return out, err
}
