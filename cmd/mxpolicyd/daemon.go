package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/panics"
	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/migrations"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// daemon holds what serve wires together: it is the only place that knows
// every package.
type daemon struct {
	cfg     *config.Config // as started: what a restart would change
	cur     atomic.Pointer[config.Config]
	log     *slog.Logger
	db      *db.DB
	metrics *metrics.Metrics
	engine  *policy.Engine
	wiring  *wiring
	stop    []func()

	// lifecycle orders reload and close: a SIGHUP during shutdown must
	// not build checks on a wiring being closed. closed is set by close.
	lifecycle sync.Mutex
	closed    bool
}

func openDaemon(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, log: logger, metrics: metrics.New()}
	d.cur.Store(cfg)
	store, err := db.Start(ctx, cfg.Database, db.StartOptions{Logger: logger, Prepare: d.prepareStore})
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", db.Redact(cfg.Database), err)
	}
	d.db = store
	d.stop = append(d.stop, store.Close)
	d.wiring = newWiring(ctx, cfg, logger, store, d.metrics, false)
	d.stop = append(d.stop, d.wiring.close)
	steps, err := d.wiring.steps(ctx, cfg)
	if err != nil {
		d.close()
		return nil, err
	}
	opt := policy.Options{
		Budget:   cfg.RequestTimeout,
		SkipSASL: cfg.SkipSASL,
		Observe:  cfg.Observe,
		Logger:   logger,
		Record:   append([]policy.Recorder{d.metrics}, d.wiring.recorders()...),
	}
	if store.IsPostgres() { // shared by several hosts: one clock for what they store
		opt.ClockOffset = store.ClockOffset
		d.metrics.WatchDatabaseClock(store.ClockOffset)
	}
	d.engine = policy.NewEngine(opt, steps)
	if err := d.startMetrics(ctx); err != nil {
		d.close()
		return nil, err
	}
	d.startGC(ctx)
	return d, nil
}

// config is the running config: the last one loaded, by start or SIGHUP.
func (d *daemon) config() *config.Config { return d.cur.Load() }

// prepareStore readies the database when it is first reached and after
// each outage (db.StartOptions.Prepare): migrations, or with auto_migrate
// off a check that none is pending, then the decision log's partitions.
func (d *daemon) prepareStore(ctx context.Context, store *db.DB) error {
	cfg := d.config()
	if cfg.AutoMigrate {
		if _, err := applyMigrations(ctx, store, d.log); err != nil {
			return err
		}
	} else if pending, err := migrations.Pending(ctx, store); err != nil {
		return err
	} else if len(pending) > 0 {
		return fmt.Errorf("migrations pending (run mxpolicyd migrate): %s", strings.Join(pending, ", "))
	}
	if cfg.DecisionLog.Enabled {
		if _, err := decisionlog.EnsurePartitions(ctx, store, time.Now(), cfg.DecisionLog.PartitionsAhead); err != nil {
			d.log.Warn("decision log: creating partitions failed; rows go to the default partition", "err", err)
		}
	}
	return nil
}

// openStore opens the database named by cfg for a command and, if asked,
// applies pending migrations. Unlike serve, a command fails at once when
// the database cannot be reached.
func openStore(ctx context.Context, cfg *config.Config, logger *slog.Logger, migrate bool) (*db.DB, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := db.Open(octx, cfg.Database, logger)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", db.Redact(cfg.Database), err)
	}
	if migrate {
		if _, err := applyMigrations(octx, store, logger); err != nil {
			store.Close()
			return nil, err
		}
	}
	return store, nil
}

func (d *daemon) startMetrics(ctx context.Context) error {
	if !d.cfg.Metrics.Enabled() {
		return nil
	}
	// Listen here, not in the goroutine, so a busy port fails serve at once.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", d.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// /readyz reports the connector's state; it does no I/O of its own.
	ready := func(context.Context) error { return d.db.Ready() }
	srv := metrics.NewServer(d.cfg.Metrics, d.metrics, ready, d.log)
	d.serveReport(ctx, srv)
	srv.ReadyDetail(d.wiring.dnsbl.health) // each DNS list's self-check
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(mctx, ln); err != nil {
			d.log.Error("metrics server failed", "err", err)
		}
	}()
	d.stop = append(d.stop, func() { cancel(); <-done })
	return nil
}

// listen opens every configured listener and builds the policy server.
func (d *daemon) listen() (*policy.Server, []net.Listener, error) {
	lns, err := d.cfg.Listeners()
	if err != nil {
		return nil, nil, err
	}
	return &policy.Server{ServerConfig: d.cfg.ServerConfig, Decider: d.engine, Logger: d.log, Conns: d.metrics}, lns, nil
}

// reload re-reads the config file on SIGHUP and swaps in new checks. What
// cannot change without a restart (listeners, database, metrics, logging,
// the decision log, hostname) keeps its running value (keepRunning), and
// one warning names each such key that changed; a bad file keeps the
// running config.
func (d *daemon) reload(ctx context.Context, path string, override func(*config.Config)) {
	d.lifecycle.Lock()
	defer d.lifecycle.Unlock()
	if d.closed {
		return // shutting down
	}
	cfg, err := config.Load(path, checkDefaults(), override)
	var keys []string
	var steps []policy.Step
	if err == nil {
		keys = restartKeys(d.cfg, cfg)
		keepRunning(d.cfg, cfg)
		steps, err = d.wiring.steps(ctx, cfg)
	}
	if err != nil {
		d.log.Error("reload failed, keeping the running config", "err", err)
		return
	}
	d.engine.SetSteps(steps)
	d.engine.SetTuning(policy.Tuning{Budget: cfg.RequestTimeout, SkipSASL: cfg.SkipSASL, Observe: cfg.Observe})
	d.cur.Store(cfg)
	setMemoryLimit(cfg)
	if len(keys) > 0 {
		d.log.Warn("config reload: these keys changed but need a restart; running with the old values",
			"keys", strings.Join(keys, ","))
	}
	d.log.Info("config reloaded", "file", path, "observe", cfg.Observe)
}

func (d *daemon) close() {
	d.lifecycle.Lock()
	defer d.lifecycle.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	for i := len(d.stop) - 1; i >= 0; i-- {
		d.stop[i]()
	}
}

// startGC runs gc inside the daemon every gc.interval of the running
// config, so a SIGHUP changes what gc keeps and how often it runs (from the
// next run on). While the database is not ready a run is skipped quietly:
// the connector has logged the outage.
func (d *daemon) startGC(ctx context.Context) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			wait := d.config().GC.Interval
			if wait <= 0 {
				wait = gcOffRecheck
			}
			select {
			case <-gctx.Done():
				return
			case <-time.After(wait):
			}
			if cfg := d.config(); cfg.GC.Interval > 0 {
				d.runGC(gctx, cfg)
			}
		}
	}()
	d.stop = append(d.stop, func() { cancel(); <-done })
}

// gcOffRecheck is how soon a daemon with gc.interval 0 notices a reload
// that turns it on.
const gcOffRecheck = time.Minute

// gcRunLimit bounds one scheduled gc run: gc deletes in short batches and
// a run of a busy day's expiry takes seconds (greylist/BENCHMARKS.md).
const gcRunLimit = 10 * time.Minute

// runGC is one scheduled run, bounded by the interval (at most
// gcRunLimit): a statement stuck on a half-dead connection ends with the
// run instead of holding every later one; a panic in a driver fails the
// run, not the daemon.
func (d *daemon) runGC(ctx context.Context, cfg *config.Config) {
	ctx, cancel := context.WithTimeout(ctx, min(cfg.GC.Interval, gcRunLimit))
	defer cancel()
	var res gcResult
	err := panics.Call(func() (err error) {
		res, err = collectGarbage(ctx, cfg, d.db, false)
		return err
	})
	switch {
	case errors.Is(err, db.ErrUnavailable):
		d.log.Debug("scheduled gc skipped: database not ready", "err", err)
	case err != nil:
		d.log.Error("scheduled gc failed", "err", err)
	default:
		d.log.Info("scheduled gc done", res.attrs()...)
	}
}
