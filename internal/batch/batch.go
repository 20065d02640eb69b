// Package batch gathers concurrent calls into groups that go to the
// database together: one goroutine gathers a group (until it holds
// MaxRows calls or Window has passed since its first), waits for one of
// MaxInFlight slots and hands the group to a goroutine of its own, which
// runs the flush function once and answers every call of the group.
//
// A database that is busy answers groups more slowly, so more calls wait
// and the next group is larger: per-statement and per-commit costs are
// shared by more calls exactly when they matter. greylist decides new
// triplets this way (one transaction per group) and replies looks its
// pairs up so (one statement per group).
package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
)

// Options bound the groups. Zero fields are errors for New; the callers
// fill in their defaults.
type Options struct {
	// MaxRows is the most calls in one group.
	MaxRows int
	// Window is how long the first call of a group waits for others before
	// the group is sent, unless it fills first; 0 sends what is already
	// queued without waiting (SQLite's single writer groups whatever queued
	// up while it was committing).
	Window time.Duration
	// MaxInFlight is how many groups may be in the database at once.
	MaxInFlight int
}

// Stats counts what was sent.
type Stats struct {
	Transactions int64 // flushes run, resends included
	Rows         int64 // calls sent in them
}

// ErrClosed answers a call made after Close.
var ErrClosed = errors.New("batch: closed")

// Call is one queued call: its context (the group goes on while any call
// of it still waits) and its argument. done has room for the answer, so
// the group's goroutine never waits for a caller that has already given
// up.
type Call[A, R any] struct {
	Ctx  context.Context
	Arg  A
	done chan Result[R]
}

// Result is one call's answer.
type Result[R any] struct {
	Val R
	Err error
}

// Flush runs a group and returns each call's result, in order. A
// *RowError means that one call's statement failed and nothing of the
// group took effect (the transaction was rolled back): the group is sent
// again without that call.
type Flush[A, R any] func(ctx context.Context, group []*Call[A, R]) ([]Result[R], error)

// RowError is a statement error caused by one call's values (a data or
// constraint error), not by the database or the connection.
type RowError struct {
	Row int
	Err error
}

func (e *RowError) Error() string { return e.Err.Error() }
func (e *RowError) Unwrap() error { return e.Err }

// maxResends bounds how often one group is sent again after dropping a
// call whose statement failed, so hostile input costs at most that many
// extra round trips.
const maxResends = 2

// Batcher gathers calls into groups and flushes them.
type Batcher[A, R any] struct {
	opts      Options
	flush     Flush[A, R]
	queue     chan *Call[A, R] // unbuffered: a call is either gathered or still the caller's
	slots     chan struct{}
	quit      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	txns      atomic.Int64
	rows      atomic.Int64
	// gathered, when set before the first call, is called with the
	// group's size after each call gathered: a test seam.
	gathered func(n int)
}

// New starts a batcher's gathering goroutine; Close stops it.
func New[A, R any](opts Options, flush Flush[A, R]) *Batcher[A, R] {
	b := &Batcher[A, R]{
		opts:    opts,
		flush:   flush,
		queue:   make(chan *Call[A, R]),
		slots:   make(chan struct{}, max(opts.MaxInFlight, 1)),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	b.opts.MaxRows = max(b.opts.MaxRows, 1)
	go b.collect()
	return b
}

// Do queues one call and waits for its group's answer or for ctx. A call
// whose ctx ends while queued is not sent; if its group was already sent,
// the answer is dropped.
func (b *Batcher[A, R]) Do(ctx context.Context, arg A) (R, error) {
	var zero R
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c := &Call[A, R]{Ctx: ctx, Arg: arg, done: make(chan Result[R], 1)}
	select {
	case b.queue <- c:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-b.quit:
		return zero, ErrClosed
	}
	select {
	case res := <-c.done:
		return res.Val, res.Err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Close stops gathering, sends the group being gathered, and returns when
// every group in flight has been answered.
func (b *Batcher[A, R]) Close() {
	b.closeOnce.Do(func() { close(b.quit) })
	<-b.stopped
}

// Stats reports what was sent so far.
func (b *Batcher[A, R]) Stats() Stats {
	return Stats{Transactions: b.txns.Load(), Rows: b.rows.Load()}
}

// collect is the one gathering goroutine. It takes a slot before it
// gathers, so while every slot is busy new calls wait in the queue and
// the next group fills at once: the busier the database, the larger the
// groups.
func (b *Batcher[A, R]) collect() {
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
func (b *Batcher[A, R]) drain() {
	for range cap(b.slots) {
		b.slots <- struct{}{}
	}
}

// gather waits for a first call, then adds calls until the group is full
// or the window has passed; open is false once Close was called.
func (b *Batcher[A, R]) gather() (group []*Call[A, R], open bool) {
	select {
	case c := <-b.queue:
		group = b.add(group, c)
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
			case c := <-b.queue:
				group = b.add(group, c)
				continue
			case <-b.quit:
				return group, false
			default:
				return group, true
			}
		}
		select {
		case c := <-b.queue:
			group = b.add(group, c)
		case <-window:
			return group, true
		case <-b.quit:
			return group, false
		}
	}
	return group, true
}

func (b *Batcher[A, R]) add(group []*Call[A, R], c *Call[A, R]) []*Call[A, R] {
	group = append(group, c)
	if b.gathered != nil {
		b.gathered(len(group))
	}
	return group
}

// send runs one group and answers its calls, then frees its slot. A call
// whose statement failed gets that error and the others are sent again
// without it: the failed group took no effect.
func (b *Batcher[A, R]) send(group []*Call[A, R]) {
	defer func() { <-b.slots }()
	for attempt := 0; ; attempt++ {
		group = slices.DeleteFunc(group, func(c *Call[A, R]) bool { return c.Ctx.Err() != nil })
		if len(group) == 0 {
			return
		}
		res, err := b.run(group)
		var re *RowError
		switch {
		case err == nil:
			for i, c := range group {
				c.done <- res[i]
			}
			return
		case errors.As(err, &re) && attempt < maxResends && re.Row >= 0 && re.Row < len(group):
			group[re.Row].done <- Result[R]{Err: err}
			group = slices.Delete(group, re.Row, re.Row+1)
		default:
			for _, c := range group {
				c.done <- Result[R]{Err: err}
			}
			return
		}
	}
}

// run calls flush once, on a context that ends when every call of the
// group has given up, and turns a panic in the database driver into an
// error for this group alone.
func (b *Batcher[A, R]) run(group []*Call[A, R]) (res []Result[R], err error) {
	ctx, stop := groupContext(group)
	defer stop()
	b.txns.Add(1)
	b.rows.Add(int64(len(group)))
	err = panics.Call(func() (err error) {
		res, err = b.flush(ctx, group)
		return err
	})
	if pe := (*panics.Error)(nil); errors.As(err, &pe) {
		// Its stack goes with it to the check, whose engine logs it.
		return nil, fmt.Errorf("batch: flush panicked: %w", pe)
	}
	if err == nil && len(res) != len(group) {
		err = fmt.Errorf("batch: flush returned %d results for %d calls", len(res), len(group))
	}
	return res, err
}

// groupContext is cancelled once the context of every call in group is
// done: the group goes on as long as someone waits for its answer.
func groupContext[A, R any](group []*Call[A, R]) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int64
	left.Store(int64(len(group)))
	stops := make([]func() bool, len(group))
	for i, c := range group {
		stops[i] = context.AfterFunc(c.Ctx, func() {
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
