package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
)

// notReady is why the store takes no queries. Its text is shown by
// /readyz, so it names no host or user; the cause goes to the log once.
type notReady struct{ reason string }

func (e *notReady) Error() string { return "db: " + e.reason }

// Reason is the text for /readyz (metrics.Pinger).
func (e *notReady) Reason() string { return e.reason }

// Is makes every notReady match ErrUnavailable.
func (e *notReady) Is(target error) bool { return target == ErrUnavailable }

var (
	// ErrUnavailable is what a store call returns at once while the
	// daemon's PostgreSQL is not reachable: the caller answers its
	// on_error action instead of waiting for a connect timeout. It is
	// temporary (IsTemporary).
	ErrUnavailable error = &notReady{"database not reachable"}
	// ErrMigrationsPending is returned instead while the server answers
	// but the schema is not yet migrated (auto_migrate off, or a
	// migration failed). It matches ErrUnavailable.
	ErrMigrationsPending error = &notReady{"migrations pending"}
	// ErrReadOnly is returned instead while the server answers but takes
	// no writes: the DSN names a hot standby. It matches ErrUnavailable.
	ErrReadOnly error = &notReady{"database is read-only"}
)

// Connector timing. Reconnects back off from backoffMin to backoffMax, so
// a long outage costs one connect attempt every 5 s (trivial for
// the server even with many MX hosts) and greylisting resumes within
// 5 s of its return. While ready, the
// server is probed every liveEvery; a probe slower than probeTimeout
// (under the greylist check's 1.5 s) marks it down, so that requests fail
// fast instead of each waiting for a frozen server.
const (
	backoffMin     = time.Second
	backoffMax     = 5 * time.Second
	liveEvery      = 2 * time.Second
	probeTimeout   = time.Second
	prepareTimeout = 2 * time.Minute
)

// connector keeps a store's readiness: it probes the server, runs prepare
// (migrations) once the server answers, and retries with backoff. probe and
// after are the seams tests replace: the dial and the clock.
type connector struct {
	probe   func(ctx context.Context) error
	prepare func(ctx context.Context) error
	after   func(time.Duration) <-chan time.Time
	onDown  func() // drops pooled connections when a ready store goes down
	log     *slog.Logger

	state atomic.Pointer[error] // nil pointer or nil error: ready
	mu    sync.Mutex            // serializes logging of transitions
	seen  bool                  // the first state was logged
	up    bool                  // the store has been ready before
}

func newConnector(probe, prepare func(context.Context) error, logger *slog.Logger) *connector {
	c := &connector{probe: probe, prepare: prepare, after: time.After, log: logger}
	c.set(ErrUnavailable, nil)
	return c
}

// ready returns nil or the notReady error.
func (c *connector) ready() error {
	if p := c.state.Load(); p != nil {
		return *p
	}
	return nil
}

// run probes until ctx ends. Each failed attempt doubles the wait, up to
// backoffMax; a success resets it.
func (c *connector) run(ctx context.Context) {
	wait := backoffMin
	for {
		next := liveEvery
		if err := c.attemptSafely(ctx); err != nil {
			next, wait = wait, min(2*wait, backoffMax)
		} else {
			wait = backoffMin
		}
		select {
		case <-ctx.Done():
			return
		case <-c.after(next):
		}
	}
}

// attemptSafely is attempt with a panic (in pgx, in a migration) made a
// failed attempt: logged with its stack, the store not ready, retried
// like any other failure instead of ending the connector for good.
func (c *connector) attemptSafely(ctx context.Context) error {
	err := panics.Call(func() error { return c.attempt(ctx) })
	if pe := (*panics.Error)(nil); errors.As(err, &pe) && ctx.Err() == nil {
		c.log.Error("database connector: panic; the store is not ready until the next attempt", "err", pe)
		c.set(ErrUnavailable, err)
	}
	return err
}

// attempt probes the server and, if the store was not ready, prepares it.
func (c *connector) attempt(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	err := c.probe(pctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			state := ErrUnavailable
			if errors.Is(err, errReadOnly) {
				state = ErrReadOnly
			}
			c.set(state, err)
		}
		return err
	}
	if c.ready() == nil {
		return nil
	}
	pctx, cancel = context.WithTimeout(bypass(ctx), prepareTimeout)
	defer cancel()
	if err := c.prepare(pctx); err != nil {
		state := ErrMigrationsPending
		if IsTemporary(err) {
			state = ErrUnavailable
		}
		if ctx.Err() == nil {
			c.set(state, err)
		}
		return err
	}
	c.set(nil, nil)
	return nil
}

// set records the state and logs it when it changed: an outage is one
// line when it starts and one when it ends, never one per attempt.
func (c *connector) set(state, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.ready()
	c.state.Store(&state)
	if !c.seen && cause == nil && state != nil {
		return // the initial "not yet connected"
	}
	if c.seen && prev == state {
		if cause != nil {
			c.log.Debug("database still not ready", "state", state.Error(), "err", Redact(cause.Error()))
		}
		return
	}
	c.seen = true
	switch {
	case state == nil && !c.up:
		c.up = true
		c.log.Info("database ready")
	case state == nil:
		c.log.Info("database reachable again; greylisting and the decision log resume")
	case state == ErrMigrationsPending:
		c.log.Error("database schema not ready; greylisting and the decision log fail open until it is",
			"err", Redact(cause.Error()))
	case state == ErrReadOnly:
		c.log.Error("database is read-only; greylisting and the decision log fail open until it takes writes: "+
			"give the DSN the primary (target_session_attrs=read-write finds it among several hosts)",
			"err", cause.Error(), "retry_max", backoffMax)
	default:
		c.log.Warn("database not reachable; greylisting and the decision log fail open until it is",
			"err", Redact(cause.Error()), "retry_max", backoffMax)
	}
	if prev == nil && state != nil && c.onDown != nil {
		c.onDown()
	}
}

// bypassKey marks the contexts that may use the pool before it is ready:
// the connector's own probe and prepare (migrations, partitions).
type bypassKey struct{}

func bypass(ctx context.Context) context.Context { return context.WithValue(ctx, bypassKey{}, true) }

// gate fails fast while the store is not ready, except for the connector.
func (d *DB) gate(ctx context.Context) error {
	if d.conn == nil || ctx.Value(bypassKey{}) != nil {
		return nil
	}
	return d.conn.ready()
}

// StartOptions configure Start.
type StartOptions struct {
	Logger *slog.Logger
	// Prepare runs when the server first answers, and again after every
	// outage, before the store is marked ready: migrations, partitions.
	// Its ctx passes the readiness gate. An error leaves the store not
	// ready and is retried with the backoff. On SQLite it runs once,
	// within Start, and its error is Start's.
	Prepare func(ctx context.Context, d *DB) error

	now func() time.Time // this host's clock, for the clock offset; nil: time.Now (tests skew it)
}

// Start opens dsn for the daemon without waiting for PostgreSQL: it
// returns at once, and store calls fail fast with ErrUnavailable until a
// background connector has reached the server and run Prepare. A SQLite
// file that cannot be opened is an error, as it is a local fault; it is
// checkpointed in the background (checkpoint.go). Close stops the
// connector or the checkpoints.
func Start(ctx context.Context, dsn string, opt StartOptions) (*DB, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Prepare == nil {
		opt.Prepare = func(context.Context, *DB) error { return nil }
	}
	kind, err := KindOf(dsn)
	if err != nil {
		return nil, err
	}
	if kind == SQLite {
		d, err := Open(ctx, dsn, opt.Logger)
		if err != nil {
			return nil, err
		}
		if err := opt.Prepare(ctx, d); err != nil {
			d.Close()
			return nil, err
		}
		if d.stop, err = startCheckpointer(ctx, d, SQLitePath(dsn), opt.Logger); err != nil {
			d.Close()
			return nil, err
		}
		return d, nil
	}
	return startPG(ctx, dsn, opt)
}

func startPG(ctx context.Context, dsn string, opt StartOptions) (*DB, error) {
	cfg, err := pgConfig(dsn, false, "mxpolicyd serve")
	if err != nil {
		return nil, err
	}
	d := &DB{kind: Postgres, log: opt.Logger}
	d.clock = &serverClock{log: opt.Logger}
	p := &pgProbe{cfg: cfg.ConnConfig.Copy(), clock: d.clock, now: opt.now}
	if p.now == nil {
		p.now = time.Now
	}
	d.conn = newConnector(p.probe, func(ctx context.Context) error { return opt.Prepare(ctx, d) }, opt.Logger)
	// pgxpool calls BeforeConnect before dialing and PrepareConn on every
	// acquire (pgxpool.Config): refusing there makes every query fail at
	// once while the store is not ready, pooled connections included.
	cfg.BeforeConnect = func(ctx context.Context, _ *pgx.ConnConfig) error { return d.gate(ctx) }
	cfg.PrepareConn = func(ctx context.Context, _ *pgx.Conn) (bool, error) { return true, d.gate(ctx) }
	if d.PG, err = pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg); err != nil {
		return nil, fmt.Errorf("db: %s: %w", Redact(dsn), err)
	}
	d.conn.onDown = d.PG.Reset
	opt.Logger.Debug("database connecting", "kind", d.kind, "dsn", Redact(dsn))
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer p.close()
		d.conn.run(cctx)
	}()
	d.stop = func() { cancel(); <-done }
	return d, nil
}

// pgProbe checks the server on a connection of its own, outside the pool:
// a pool busy with requests is not an outage, and the probe must not wait
// behind them. Its query reads the server's clock, for the offset
// (clock.go).
type pgProbe struct {
	cfg   *pgx.ConnConfig
	conn  *pgx.Conn
	clock *serverClock
	now   func() time.Time // this host's clock
}

func (p *pgProbe) probe(ctx context.Context) error {
	if p.conn == nil || p.conn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			return err
		}
		p.conn = c
	}
	s, readOnly, err := measureClock(ctx, p.conn, p.now)
	if err != nil {
		p.close()
		return err
	}
	p.clock.add(s)
	if readOnly {
		p.close() // the next probe connects anew: a multi-host DSN may find the primary
		return errReadOnly
	}
	return nil
}

// errReadOnly is the probe's error for a server that takes no writes.
var errReadOnly = errors.New("the server is read-only (a hot standby, or default_transaction_read_only is on)")

func (p *pgProbe) close() {
	if p.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	_ = p.conn.Close(ctx)
	p.conn = nil
}
