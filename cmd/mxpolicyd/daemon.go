package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// daemon holds what serve wires together: it is the only place that knows
// every package.
type daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	db      *db.DB
	metrics *metrics.Metrics
	engine  *policy.Engine
	wiring  *wiring
	stop    []func()
}

func openDaemon(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, log: logger, metrics: metrics.New()}
	store, err := openStore(ctx, cfg, logger, cfg.AutoMigrate)
	if err != nil {
		return nil, err
	}
	d.db = store
	d.stop = append(d.stop, store.Close)
	d.wiring, err = newWiring(ctx, cfg, logger, store, d.metrics, false)
	if err != nil {
		d.close()
		return nil, err
	}
	d.stop = append(d.stop, d.wiring.close)
	steps, err := d.wiring.steps(cfg)
	if err != nil {
		d.close()
		return nil, err
	}
	d.engine = policy.NewEngine(policy.Options{
		Budget:   cfg.RequestTimeout,
		SkipSASL: cfg.SkipSASL,
		Observe:  cfg.Observe,
		Logger:   logger,
		Record:   append([]policy.Recorder{d.metrics}, d.wiring.recorders()...),
	}, steps)
	if err := d.startMetrics(ctx); err != nil {
		d.close()
		return nil, err
	}
	d.startGC(ctx)
	return d, nil
}

// openStore opens the database named by cfg and, if asked, applies
// pending migrations.
func openStore(ctx context.Context, cfg *config.Config, logger *slog.Logger, migrate bool) (*db.DB, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := db.Open(octx, cfg.Database, logger)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", db.Redact(cfg.Database), err)
	}
	if migrate {
		if err := applyMigrations(octx, store, logger); err != nil {
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
	srv := metrics.NewServer(d.cfg.Metrics, d.metrics, d.db.Ping, d.log)
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
	allowed, _ := d.cfg.AllowedPrefixes()
	mode, _ := d.cfg.SocketFileMode()
	srv := &policy.Server{
		Decider:      d.engine,
		Limits:       d.cfg.Limits(),
		IdleTimeout:  d.cfg.IdleTimeout,
		ReadTimeout:  d.cfg.ReadTimeout,
		WriteTimeout: d.cfg.WriteTimeout,
		MaxConns:     d.cfg.MaxConnections,
		Allowed:      allowed,
		Logger:       d.log,
		Conns:        d.metrics,
	}
	var lns []net.Listener
	for _, addr := range d.cfg.Listen {
		ln, err := policy.Listen(addr, mode)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, nil, err
		}
		lns = append(lns, ln)
	}
	return srv, lns, nil
}

// reload re-reads the config file on SIGHUP and swaps in new checks. What
// cannot change without a restart (listeners, database) is kept; a bad
// file keeps the running config.
func (d *daemon) reload(ctx context.Context, path string, override func(*config.Config)) {
	cfg, err := config.Load(path, override)
	if err == nil {
		err = d.wiring.reload(ctx, cfg)
	}
	var steps []policy.Step
	if err == nil {
		steps, err = d.wiring.steps(cfg)
	}
	if err != nil {
		d.log.Error("reload failed, keeping the running config", "err", err)
		return
	}
	d.engine.SetSteps(steps)
	d.engine.SetTuning(policy.Tuning{Budget: cfg.RequestTimeout, SkipSASL: cfg.SkipSASL, Observe: cfg.Observe})
	d.log.Info("config reloaded", "file", path, "observe", cfg.Observe)
}

func (d *daemon) close() {
	for i := len(d.stop) - 1; i >= 0; i-- {
		d.stop[i]()
	}
}

// startGC runs gc on gc.interval inside the daemon, if configured.
func (d *daemon) startGC(ctx context.Context) {
	if d.cfg.GC.Interval <= 0 {
		return
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d.cfg.GC.Interval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return
			case <-t.C:
				res, err := collectGarbage(gctx, d.cfg, d.db, false)
				if err != nil {
					d.log.Error("scheduled gc failed", "err", err)
					continue
				}
				d.log.Info("scheduled gc done", res.attrs()...)
			}
		}
	}()
	d.stop = append(d.stop, func() { cancel(); <-done })
}
