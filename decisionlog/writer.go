// Package decisionlog records every decision in the decisions table, off
// the reply path, and enforces its retention (README, "Day-2 operations").
//
// Writer is the engine's policy.Recorder: Record hands the row to a
// bounded queue without ever waiting, and one goroutine writes the queue
// in batches. When the database is slow or down, batches time out and
// rows are dropped and counted; memory never grows past the queue, and a
// reply never waits for the log.
package decisionlog

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Observer counts rows; *metrics.Metrics implements it.
type Observer interface {
	LogRowsWritten(n int)
	LogRowsDropped(n int)
}

// Options are a Writer's collaborators.
type Options struct {
	Host     string           // the host column: which MX decided
	Logger   *slog.Logger     // nil: discard
	Observer Observer         // nil: count only in Stats
	Now      func() time.Time // the clock for partition upkeep; nil: time.Now
	// Tick triggers flushes and upkeep; nil: a ticker every
	// Config.FlushInterval. Tests send on it instead of sleeping.
	Tick <-chan time.Time
	// Wait waits d before a batch is sent again, or until ctx is done
	// (its error); nil: db.Pause. Tests act on the database in it instead
	// of sleeping.
	Wait func(ctx context.Context, d time.Duration) error
}

// Stats are the writer's totals since New.
type Stats struct {
	Written    uint64 // rows stored
	QueueFull  uint64 // rows dropped because the queue was full
	WriteError uint64 // rows dropped because their batch failed
}

// Writer batches decisions into the decisions table.
type Writer struct {
	db     *db.DB
	cfg    Config
	opt    Options
	rows   chan Row
	full   chan struct{} // a batch's worth is queued
	flush  chan chan struct{}
	quit   chan struct{}
	done   chan struct{}
	ctx    context.Context // parent of every write; cancelled by Close's deadline
	cancel context.CancelFunc
	ticker *time.Ticker
	closed atomic.Bool
	once   sync.Once

	written, queueFull, writeErr atomic.Uint64

	// insert writes one transaction: Insert, or a stand-in in tests.
	insert func(context.Context, *db.DB, []Row, *storeWaits) (int, error)
	// waits counts the waits for the SQLite store's connection
	// (sqliteLog.insert); nil on PostgreSQL.
	waits *storeWaits

	// Owned by the run goroutine.
	batch      []Row // rows waiting for the next write
	stopping   bool  // quit was received: a panic now ends the writer
	nextUpkeep time.Time
	lastWarn   time.Time
	lastErr    error // the last batch failure since the last warning
	warned     Stats // totals at the last warning
}

// New starts a writer. Call Close to flush and stop it.
func New(d *db.DB, cfg Config, opt Options) *Writer {
	return start(d, cfg, opt, insertSome)
}

func start(d *db.DB, cfg Config, opt Options, insert func(context.Context, *db.DB, []Row, *storeWaits) (int, error)) *Writer {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Wait == nil {
		opt.Wait = db.Pause
	}
	w := &Writer{
		db: d, cfg: cfg, opt: opt, insert: insert,
		rows:  make(chan Row, cfg.QueueSize),
		full:  make(chan struct{}, 1),
		flush: make(chan chan struct{}),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	if d != nil && d.SQL != nil {
		w.waits = newStoreWaits(d.SQL)
	}
	if w.opt.Tick == nil {
		w.ticker = time.NewTicker(cfg.FlushInterval)
		w.opt.Tick = w.ticker.C
	}
	go w.run()
	return w
}

// Record queues the decision's row and returns at once. A full queue, or
// a closed writer, drops the row and counts it (policy.Recorder).
func (w *Writer) Record(d *policy.Decision) {
	if w.closed.Load() {
		w.dropQueueFull(1)
		return
	}
	select {
	case w.rows <- FromDecision(d, w.opt.Host):
		if len(w.rows) >= w.cfg.BatchSize {
			select {
			case w.full <- struct{}{}:
			default: // the writer has been told already
			}
		}
	default:
		w.dropQueueFull(1)
	}
}

func (w *Writer) dropQueueFull(n int) {
	if n == 0 {
		return
	}
	w.queueFull.Add(uint64(n))
	if w.opt.Observer != nil {
		w.opt.Observer.LogRowsDropped(n)
	}
}

// Stats returns the totals so far.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), QueueFull: w.queueFull.Load(), WriteError: w.writeErr.Load()}
}

// Flush writes every row queued before the call and returns when they
// are written or dropped, or when ctx ends.
func (w *Writer) Flush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case w.flush <- ack:
	case <-w.done:
		return errors.New("decisionlog: writer closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued and stops the writer. When ctx ends first,
// the write in progress is abandoned (its rows counted as dropped) and
// Close returns ctx's error.
func (w *Writer) Close(ctx context.Context) error {
	w.once.Do(func() {
		w.closed.Store(true)
		close(w.quit)
	})
	var err error
	select {
	case <-w.done:
	case <-ctx.Done():
		err = ctx.Err()
		w.cancel()
		<-w.done
	}
	w.cancel()
	if w.ticker != nil {
		w.ticker.Stop()
	}
	// A Record racing with Close may have queued a row after the final
	// drain: count it, so every row is either written or counted.
	w.dropQueueFull(w.drainCount())
	return err
}

func (w *Writer) drainCount() int {
	n := 0
	for {
		select {
		case <-w.rows:
			n++
		default:
			return n
		}
	}
}
