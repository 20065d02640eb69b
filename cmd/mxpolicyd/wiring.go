package main

import (
	"context"
	"errors"
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

// wiring builds the checks of the check table (checks.go) from the config
// and hands each package what it reports to: *metrics.Metrics implements
// every package's Observer. The whitelist snapshot and the decision log
// are made once; a reload rebuilds the rest.
type wiring struct {
	log     *slog.Logger
	db      *db.DB
	metrics *metrics.Metrics // nil: nothing observed (check)
	bg      context.Context  // background work (the whitelist poll), until close
	closers []func()

	readOnly  bool               // for check: evaluate, write nothing
	resolver  *resolver.Resolver // of the config being built: DNS lists and SPF share it
	whitelist *whitelist.Checker // kept across reloads, which re-read its files
	declog    *decisionlog.Writer
}

// newWiring prepares what the checks share. steps builds the checks.
func newWiring(ctx context.Context, cfg *config.Config, logger *slog.Logger, store *db.DB, m *metrics.Metrics, readOnly bool) *wiring {
	w := &wiring{log: logger, db: store, metrics: m, readOnly: readOnly}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.bg = bg
	w.closers = append(w.closers, cancel)
	if cfg.DecisionLog.Enabled && !readOnly {
		w.startDecisionLog(ctx, cfg)
	}
	return w
}

// steps builds every enabled check of the table for cfg, in order, each
// with its timeout and failure action from the checks section. It runs at
// start and on each reload (SIGHUP); on error the running steps stay.
func (w *wiring) steps(ctx context.Context, cfg *config.Config) ([]policy.Step, error) {
	// One DNS setting feeds both the lists and SPF.
	r, err := resolver.New(cfg.DNS)
	if err != nil {
		return nil, err
	}
	r.SetObserver(w.metrics) // mxpolicyd_resolver_healthy
	w.resolver = r
	var out []policy.Step
	for _, spec := range checkTable() {
		s := cfg.Checks[spec.name]
		if !s.On() {
			continue
		}
		c, err := spec.build(w, ctx, cfg)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, policy.Step{Check: c, Timeout: s.Timeout, OnError: s.OnError})
		}
	}
	return out, nil
}

// whitelistCheck makes the whitelist once, polling the database until
// close; a reload re-reads its files.
func (w *wiring) whitelistCheck(ctx context.Context, cfg *config.Config) (policy.Check, error) {
	if w.whitelist != nil {
		return w.whitelist, w.whitelist.Reconfigure(cfg.Whitelist)
	}
	wl, err := whitelist.New(ctx, cfg.Whitelist, whitelist.Options{Store: whitelist.NewStore(w.db, nil), Logger: w.log})
	if err != nil {
		return nil, err
	}
	w.whitelist = wl
	go wl.Run(w.bg)
	return wl, nil
}

// dnsblCheck makes the DNS list check; without lists there is none.
func (w *wiring) dnsblCheck(_ context.Context, cfg *config.Config) (policy.Check, error) {
	if len(cfg.DNSBL.Lists) == 0 {
		return nil, nil
	}
	return dnsbl.New(cfg.DNSBL, w.resolver, dnsbl.Options{Logger: w.log, Now: time.Now, Observer: w.metrics})
}

// spfCheck makes the SPF check, naming this host in Received-SPF.
func (w *wiring) spfCheck(_ context.Context, cfg *config.Config) (policy.Check, error) {
	sc := cfg.SPF
	if sc.Receiver == "" {
		sc.Receiver = cfg.Hostname // one host name for every header we add
	}
	return spf.New(sc, w.resolver, spf.Options{Logger: w.log})
}

// greylistCheck makes the greylisting check; read-only for check.
func (w *wiring) greylistCheck(_ context.Context, cfg *config.Config) (policy.Check, error) {
	gc := cfg.Greylist
	if gc.Hostname == "" {
		gc.Hostname = cfg.Hostname
	}
	newCheck := greylist.New
	if w.readOnly {
		newCheck = greylist.NewReadOnly
	}
	// Store latency and errors: mxpolicyd_store_duration_seconds,
	// mxpolicyd_store_errors_total.
	return newCheck(gc, greylist.NewStore(w.db), greylist.Options{Logger: w.log, Observer: w.metrics})
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

func (w *wiring) recorders() []policy.Recorder {
	if w.declog == nil {
		return nil
	}
	return []policy.Recorder{w.declog}
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}
