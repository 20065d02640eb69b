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
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
	"github.com/mxpolicyd/mxpolicyd/replies"
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
	glChanges *greylist.Changes // greylistChanges
	dnsbl     dnsblRun
	apply     []func()       // what steps switches to once every check is built
	greylist  greylist.Store // batched, made once: reloads keep it, close stops it
	replies   replies.Store  // likewise

	// dnsblTick makes the DNS lists' self-check ticker
	// (dnsbl.Options.Tick); nil: a real one. Tests set it.
	dnsblTick func(time.Duration) (<-chan time.Time, func())
}

// newWiring prepares what the checks share. steps builds the checks.
func newWiring(ctx context.Context, cfg *config.Config, logger *slog.Logger, store *db.DB, m *metrics.Metrics, readOnly bool) *wiring {
	w := &wiring{log: logger, db: store, metrics: m, readOnly: readOnly}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.bg = bg
	w.closers = append(w.closers, cancel, w.dnsbl.stop)
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
	w.resolver = r
	w.dnsbl.built = nil
	w.apply = nil
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
			out = append(out, policy.Step{Check: c, Timeout: s.Timeout, OnError: s.OnError, ForSASL: spec.runsForSASL,
				OwnTimeouts: spec.store})
		}
	}
	for _, apply := range w.apply {
		apply()
	}
	w.dnsbl.commit(w)
	// Only now: an observer reports the resolver healthy at once, and
	// after a failed reload mxpolicyd_resolver_healthy must still be the
	// running resolver's.
	r.SetObserver(w.metrics)
	return out, nil
}

// whitelistCheck makes the whitelist once, polling the database until
// close; a reload re-reads its files.
func (w *wiring) whitelistCheck(ctx context.Context, cfg *config.Config) (policy.Check, error) {
	if w.whitelist != nil {
		apply, err := w.whitelist.Prepare(cfg.Whitelist)
		if err != nil {
			return nil, err
		}
		w.apply = append(w.apply, apply)
		return w.whitelist, nil
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
	c, err := dnsbl.New(cfg.DNSBL, w.resolver, dnsbl.Options{Logger: w.log, Now: time.Now, Observer: w.metrics, Tick: w.dnsblTick})
	w.dnsbl.built = c
	return c, err
}

// spfCheck makes the SPF check, naming this host in Received-SPF.
func (w *wiring) spfCheck(_ context.Context, cfg *config.Config) (policy.Check, error) {
	sc := cfg.SPF
	if sc.Receiver == "" {
		sc.Receiver = cfg.Hostname // one host name for every header we add
	}
	return spf.New(sc, w.resolver, spf.Options{Logger: w.log})
}

// repliesCheck makes the replies check: pairs last as long as a passed
// triplet (greylist.max_age); read-only for check.
func (w *wiring) repliesCheck(_ context.Context, cfg *config.Config) (policy.Check, error) {
	return replies.New(cfg.Replies, w.repliesStore(), replies.Options{MaxAge: cfg.Greylist.MaxAge,
		Logger: w.log, Observer: w.metrics, ReadOnly: w.readOnly})
}

// ratelimitCheck makes the rate-limit check; without rules there is none.
// check, which writes nothing, leaves it out: a rate decision is a write.
func (w *wiring) ratelimitCheck(_ context.Context, cfg *config.Config) (policy.Check, error) {
	if len(cfg.RateLimit.Rules) == 0 || w.readOnly {
		return nil, nil
	}
	// Hits: mxpolicyd_ratelimit_hits_total; store latency and errors as
	// greylist's.
	return ratelimit.New(cfg.RateLimit, ratelimit.NewStore(w.db), ratelimit.Options{Logger: w.log, Observer: w.metrics})
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
	g, err := newCheck(gc, w.greylistStore(), greylist.Options{Logger: w.log, Observer: w.metrics})
	if err != nil {
		return nil, err
	}
	if !w.readOnly {
		g.FollowChanges(w.greylistChanges(cfg)) // release/forget empty the pass cache
	}
	return g, nil
}

// greylistChanges polls the greylist change counter every second until
// close; made once, followed by every greylist check a reload builds.
func (w *wiring) greylistChanges(cfg *config.Config) *greylist.Changes {
	if w.glChanges == nil {
		w.glChanges = greylist.NewChanges(greylist.NewAdmin(w.db, cfg.Greylist), w.log)
		go w.glChanges.Run(w.bg, time.Second)
	}
	return w.glChanges
}

// greylistStore is the batched store (greylist.NewBatchStore): concurrent
// decisions share one transaction, with its default group size and
// window. It is made once and stopped by close, which the daemon runs
// before it closes the database (daemon.go). check reads with the plain
// store's Peek and writes nothing, so it has nothing to batch.
func (w *wiring) greylistStore() greylist.Store {
	if w.readOnly {
		return greylist.NewStore(w.db)
	}
	if w.greylist == nil {
		s, stop := greylist.NewBatchStore(w.db, greylist.BatchOptions{})
		w.greylist = s
		w.closers = append(w.closers, stop)
	}
	return w.greylist
}

// repliesStore is the replies store with batched lookups
// (replies.NewBatchStore), made once and stopped by close, as
// greylistStore is; check only reads, one lookup at a time.
func (w *wiring) repliesStore() replies.Store {
	if w.readOnly {
		return replies.NewStore(w.db)
	}
	if w.replies == nil {
		s, stop := replies.NewBatchStore(w.db)
		w.replies = s
		w.closers = append(w.closers, stop)
	}
	return w.replies
}

// partitionsTimeout bounds start-up's creation of the decision log's
// partitions: a server that stops answering must not hold serve from its
// listeners; the store's preparation and gc create them later anyway.
const partitionsTimeout = 10 * time.Second

// startDecisionLog starts the writer that records decisions in batches,
// off the reply path; close flushes it.
func (w *wiring) startDecisionLog(ctx context.Context, cfg *config.Config) {
	// While the database is not ready, serve's store preparation makes them.
	pctx, cancel := context.WithTimeout(ctx, partitionsTimeout)
	defer cancel()
	_, err := decisionlog.EnsurePartitions(pctx, w.db, time.Now(), cfg.DecisionLog.PartitionsAhead)
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
