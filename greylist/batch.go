package greylist

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// BatchOptions bound how a batched store groups concurrent decisions into
// one transaction. Zero fields take the store's defaults.
type BatchOptions struct {
	// MaxRows is the most decisions in one transaction (default 64).
	MaxRows int
	// Window is how long the first decision of a group waits for others
	// before the group is sent, unless it fills first; negative sends what
	// is already queued without waiting. Default: 1 ms on both stores.
	// On SQLite, without a window, most groups held one decision and each
	// paid a transaction of its own (NewSQLiteBatchStore).
	Window time.Duration
	// MaxInFlight is how many groups may be in the database at once
	// (default 4 on PostgreSQL; always 1 on SQLite, which has one writer).
	MaxInFlight int
}

// NewBatchStore is NewStore with batching: the PGBatchStore or the
// SQLiteBatchStore for an open, migrated database. Call stop, which sends
// what is queued, before closing the database.
func NewBatchStore(d *db.DB, opts BatchOptions) (s Store, stop func()) {
	return db.Dialect(d.Kind(), newPGBatch, newSQLiteBatch)(d, opts)
}

func newPGBatch(d *db.DB, opts BatchOptions) (Store, func()) {
	s := NewPGBatchStore(d.PG, opts)
	return s, s.Close
}

func newSQLiteBatch(d *db.DB, opts BatchOptions) (Store, func()) {
	s := NewSQLiteBatchStore(d.SQL, opts)
	return s, s.Close
}

// DefaultBatchRows is the group size when BatchOptions.MaxRows is zero.
const DefaultBatchRows = 64

func (o BatchOptions) withDefaults(window time.Duration, inFlight int) BatchOptions {
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultBatchRows
	}
	switch {
	case o.Window == 0:
		o.Window = window
	case o.Window < 0:
		o.Window = 0
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = inFlight
	}
	return o
}

// BatchStats counts what a batched store sent to the database.
type BatchStats struct {
	Transactions int64 // transactions attempted, resends included
	Rows         int64 // decisions sent in them
}

// errClosed answers a Decide on a batched store after Close.
var errClosed = errors.New("greylist: store closed")

// request is one queued Decide. done has room for the answer, so the
// group's goroutine never waits for a caller that has already given up.
type request struct {
	ctx  context.Context
	now  time.Time
	cfg  *Config
	k    Key
	done chan result
}

type result struct {
	o   Outcome
	err error
}

// flushFunc runs a group in one transaction and returns each request's
// result, in order. A *rowError means that one request's statement failed
// and the transaction was rolled back: nothing of the group is committed.
type flushFunc func(ctx context.Context, group []*request) ([]result, error)

// rowError is a statement error caused by one request's values (a data or
// constraint error), not by the database or the connection.
type rowError struct {
	row int
	err error
}

func (e *rowError) Error() string { return e.err.Error() }
func (e *rowError) Unwrap() error { return e.err }

// maxResends bounds how often one group is sent again after dropping a
// request whose statement failed, so hostile input costs at most that many
// extra round trips.
const maxResends = 2

// batcher collects concurrent decisions into groups: one goroutine
// gathers a group (until it holds MaxRows or Window has passed since its
// first request), waits for one of MaxInFlight slots and hands the group
// to its own goroutine, which runs flush and answers every request.
type batcher struct {
	opts      BatchOptions
	flush     flushFunc
	queue     chan *request // unbuffered: a request is either gathered or still the caller's
	slots     chan struct{}
	quit      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	txns      atomic.Int64
	rows      atomic.Int64
	gathered  func(n int) // test seam: called with the group's size after each request gathered
}

func newBatcher(opts BatchOptions, flush flushFunc) *batcher {
	b := &batcher{
		opts:    opts,
		flush:   flush,
		queue:   make(chan *request),
		slots:   make(chan struct{}, opts.MaxInFlight),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go b.collect()
	return b
}

// decide queues one decision and waits for its group's answer or for ctx.
// A request whose ctx ends while queued is not sent; if its group was
// already sent, the answer is dropped.
func (b *batcher) decide(ctx context.Context, now time.Time, cfg *Config, k Key) (Outcome, error) {
	if err := ctx.Err(); err != nil {
		return Outcome{}, err
	}
	r := &request{ctx: ctx, now: now, cfg: cfg, k: k, done: make(chan result, 1)}
	select {
	case b.queue <- r:
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	case <-b.quit:
		return Outcome{}, errClosed
	}
	select {
	case res := <-r.done:
		return res.o, res.err
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

// close stops gathering, sends the group being gathered, and returns when
// every group in flight has been answered.
func (b *batcher) close() {
	b.closeOnce.Do(func() { close(b.quit) })
	<-b.stopped
}

func (b *batcher) stats() BatchStats {
	return BatchStats{Transactions: b.txns.Load(), Rows: b.rows.Load()}
}

// collect is the one gathering goroutine. It takes a slot before it
// gathers, so while every slot is busy new requests wait in the queue and
// the next group fills at once: the busier the database, the larger the
// groups.
func (b *batcher) collect() {
	defer close(b.stopped)
	defer b.drain()
	for {
		select {
		case b.slots <- struct{}{}:
		case <-b.quit:
			return
		}
		group, open := b.gather()
		if len(group) > 0 {
			go b.send(group)
		} else {
			<-b.slots
		}
		if !open {
			return
		}
	}
}

// drain waits until every slot is free: all groups answered.
func (b *batcher) drain() {
	for range cap(b.slots) {
		b.slots <- struct{}{}
	}
}

// gather waits for a first request, then adds requests until the group
// is full or the window has passed; open is false once Close was called.
func (b *batcher) gather() (group []*request, open bool) {
	select {
	case r := <-b.queue:
		group = b.add(group, r)
	case <-b.quit:
		return nil, false
	}
	var window <-chan time.Time
	if b.opts.Window > 0 {
		t := time.NewTimer(b.opts.Window)
		defer t.Stop()
		window = t.C
	}
	for len(group) < b.opts.MaxRows {
		if window == nil {
			select {
			case r := <-b.queue:
				group = b.add(group, r)
				continue
			case <-b.quit:
				return group, false
			default:
				return group, true
			}
		}
		select {
		case r := <-b.queue:
			group = b.add(group, r)
		case <-window:
			return group, true
		case <-b.quit:
			return group, false
		}
	}
	return group, true
}

func (b *batcher) add(group []*request, r *request) []*request {
	group = append(group, r)
	if b.gathered != nil {
		b.gathered(len(group))
	}
	return group
}

// send runs one group and answers its requests, then frees its slot. A
// request whose statement failed gets that error and the others are sent
// again without it: the failed transaction committed nothing.
func (b *batcher) send(group []*request) {
	defer func() { <-b.slots }()
	for attempt := 0; ; attempt++ {
		group = slices.DeleteFunc(group, func(r *request) bool { return r.ctx.Err() != nil })
		if len(group) == 0 {
			return
		}
		res, err := b.run(group)
		var re *rowError
		switch {
		case err == nil:
			for i, r := range group {
				r.done <- res[i]
			}
			return
		case errors.As(err, &re) && attempt < maxResends && re.row >= 0 && re.row < len(group):
			group[re.row].done <- result{err: err}
			group = slices.Delete(group, re.row, re.row+1)
		default:
			for _, r := range group {
				r.done <- result{err: err}
			}
			return
		}
	}
}

// run calls flush once, on a context that ends when every request of the
// group has given up, and turns a panic in the database driver into an
// error for this group alone.
func (b *batcher) run(group []*request) (res []result, err error) {
	ctx, stop := groupContext(group)
	defer stop()
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("greylist: batch panicked: %v", p)
		}
	}()
	b.txns.Add(1)
	b.rows.Add(int64(len(group)))
	res, err = b.flush(ctx, group)
	if err == nil && len(res) != len(group) {
		err = fmt.Errorf("greylist: batch returned %d results for %d decisions", len(res), len(group))
	}
	return res, err
}

// groupContext is cancelled once the context of every request in group is
// done: the group goes on as long as someone waits for its answer.
func groupContext(group []*request) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int64
	left.Store(int64(len(group)))
	stops := make([]func() bool, len(group))
	for i, r := range group {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, s := range stops {
			s()
		}
		cancel()
	}
}
