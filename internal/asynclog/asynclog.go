// Package asynclog is an slog.Handler that hands records to one writer
// goroutine and never waits for the log sink.
//
// Postfix waits for a policy reply only up to its timeout, then gives up
// on the request (SMTPD_POLICY_README, "Advanced policy client/server
// configuration"; postconf(5), smtpd_policy_service_timeout). A daemon that logs each decision
// synchronously before it replies inherits every stall of its log sink: a
// stderr pipe that nobody reads (a stuck journald, a full `| logger`)
// fills its buffer, the next write blocks, and from then on no connection
// gets a reply. Here Handle only copies the record into a bounded queue;
// when the queue is full the record is dropped and counted, and once the
// sink accepts again the writer says so in one Warn record with the count.
package asynclog

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueueSize is how many records may wait for a slow sink: a few
// seconds of a busy MX's decision lines, a few megabytes at most.
const DefaultQueueSize = 4096

// Observer counts records lost; *metrics.Metrics implements it.
type Observer interface {
	LogRecordsDropped(n int)
}

// Options configure New.
type Options struct {
	QueueSize int      // records the queue holds; 0: DefaultQueueSize
	Observer  Observer // nil: count only in Dropped (see SetObserver)
}

// Handler queues records for the writer goroutine. Handlers derived by
// WithAttrs and WithGroup share the queue and the writer.
type Handler struct {
	inner slog.Handler // the handler this record goes to
	s     *sink
}

// item is one queued record with the handler it is for, so derived
// handlers keep their attributes and groups; or, from HandleJob, a
// function that writes its record to h itself.
type item struct {
	ctx context.Context
	h   slog.Handler
	r   slog.Record
	job Job
}

// New starts the writer goroutine in front of inner. Call Close to flush
// the queue and stop it.
func New(inner slog.Handler, opt Options) *Handler { return start(inner, opt, nil) }

// start is New, with out the buffer inner writes to (NewBuffered), or nil.
func start(inner slog.Handler, opt Options, out *buffer) *Handler {
	if opt.QueueSize <= 0 {
		opt.QueueSize = DefaultQueueSize
	}
	s := &sink{
		base:  inner,
		queue: make(chan item, opt.QueueSize),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		obs:   opt.Observer,
		out:   out,
	}
	go s.run()
	return &Handler{inner: inner, s: s}
}

// Enabled asks the inner handler, so records below its level are
// discarded before they are queued.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle queues a copy of r and returns at once. With the queue full, or
// the handler closed, r is dropped and counted. The copy is needed
// because a Record must be cloned to outlive the call (log/slog, Record).
// The context keeps its values but not its cancellation: a request's
// context usually ends before its record is written.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	h.s.inflight.Add(1)
	defer h.s.inflight.Add(-1)
	if h.s.closed.Load() {
		h.s.drop(1)
		return nil
	}
	if ctx.Done() != nil {
		ctx = context.WithoutCancel(ctx) // a context that can end: keep only its values
	}
	select {
	case h.s.queue <- item{ctx: ctx, h: h.inner, r: r.Clone()}:
	default:
		h.s.drop(1)
	}
	return nil
}

// A Job writes a record to the handler it is given (HandleJob).
type Job interface{ Write(slog.Handler) error }

// JobFunc is a function as a Job.
type JobFunc func(slog.Handler) error

// Write calls f(h).
func (f JobFunc) Write(h slog.Handler) error { return f(h) }

// HandleJob queues j, which the writer calls with the handler a record
// given to Handle would go to: for a caller that writes its record to
// that handler itself, after the call returns (so j must only read what
// it holds). It is dropped and counted as a record would be. A pointer
// held as a Job costs no allocation, where a closure would.
func (h *Handler) HandleJob(j Job) {
	h.s.inflight.Add(1)
	defer h.s.inflight.Add(-1)
	if h.s.closed.Load() {
		h.s.drop(1)
		return
	}
	select {
	case h.s.queue <- item{h: h.inner, job: j}:
	default:
		h.s.drop(1)
	}
}

// WithAttrs returns a handler with attrs that shares h's queue.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), s: h.s}
}

// WithGroup returns a handler with the group that shares h's queue.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), s: h.s}
}

// SetObserver makes o the observer. Records dropped before, and not yet
// reported to an observer, are reported to o at once, so a logger
// created before the metrics loses none of its count.
func (h *Handler) SetObserver(o Observer) { h.s.setObserver(o) }

// Dropped is the number of records lost so far: queue full, handler
// closed, or the inner handler failing or panicking.
func (h *Handler) Dropped() uint64 { return h.s.dropped.Load() }

// Close stops accepting records, writes what is queued and stops the
// writer. When ctx ends first (the sink is stuck) Close returns ctx's
// error and leaves the writer to finish or hang on its own.
func (h *Handler) Close(ctx context.Context) error {
	h.s.once.Do(func() {
		h.s.closed.Store(true)
		// A Handle that read closed false may be about to queue: the
		// writer's final drain must come after it, or its record would
		// stay in the queue, neither written nor counted. Handle never
		// blocks, so this wait is short.
		for h.s.inflight.Load() != 0 {
			runtime.Gosched()
		}
		close(h.s.quit)
	})
	select {
	case <-h.s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.s.drop(h.s.drainCount()) // none: every Handle before Close queued before the drain
	return nil
}

// sink is the state every derived Handler shares.
type sink struct {
	base  slog.Handler // the handler given to New: the summary goes here
	out   *buffer      // what base writes to (NewBuffered), or nil; writer goroutine only
	queue chan item
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once

	closed   atomic.Bool
	inflight atomic.Int64 // Handle and HandleJob calls under way (Close)
	dropped  atomic.Uint64

	mu         sync.Mutex // orders observer changes against drops
	obs        Observer
	unreported int // drops not yet reported to an observer

	reported uint64 // drops announced in a summary; writer goroutine only
}

// drop counts n lost records and reports them to the observer. The
// observer is called outside the lock.
func (s *sink) drop(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.dropped.Add(uint64(n))
	o := s.obs
	if o == nil {
		s.unreported += n
	}
	s.mu.Unlock()
	if o != nil {
		o.LogRecordsDropped(n)
	}
}

func (s *sink) setObserver(o Observer) {
	s.mu.Lock()
	s.obs = o
	n := s.unreported
	if o != nil {
		s.unreported = 0
	}
	s.mu.Unlock()
	if o != nil && n > 0 {
		o.LogRecordsDropped(n)
	}
}

func (s *sink) drainCount() int {
	n := 0
	for {
		select {
		case <-s.queue:
			n++
		default:
			return n
		}
	}
}

// run is the writer goroutine: it writes records in order until Close,
// then writes what is still queued.
func (s *sink) run() {
	defer close(s.done)
	for {
		select {
		case it := <-s.queue:
			s.write(it)
			if len(s.queue) == 0 || (s.out != nil && len(s.out.buf) >= flushAt) {
				s.flush()
			}
			if len(s.queue) == 0 && s.out != nil {
				s.pause()
			}
		case <-s.quit:
			for n := len(s.queue); n > 0; n-- {
				s.write(<-s.queue)
			}
			s.summarize()
			s.flush()
			return
		}
	}
}

// pause lets records gather for a moment after the queue ran empty, so a
// busy daemon wakes the writer once per many records instead of once per
// record; a record that comes alone waits at most pauseFor. Close ends
// the pause at once.
func (s *sink) pause() {
	t := time.NewTimer(pauseFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.quit:
	}
}

// pauseFor is how long the writer lets records gather once it has written
// every queued one: at a busy MX's thousands of decisions a second, a
// few dozen records.
const pauseFor = time.Millisecond

// write passes the record on and, once the sink has taken it, announces
// the records dropped meanwhile. A record the inner handler fails on, or
// panics on, is counted as dropped: the sink may be the very thing
// failing, so nothing is logged about it.
func (s *sink) write(it item) {
	if !s.handle(it) {
		s.drop(1)
		return
	}
	if s.out != nil {
		s.out.records++
	}
	s.summarize()
}

// flush writes the buffer, if there is one, counting what a failed write
// lost; a summary lost with it is owed again.
func (s *sink) flush() {
	if s.out != nil {
		lost, unannounced := s.out.flush()
		s.reported -= unannounced
		s.drop(lost)
	}
}

// summarize writes one Warn record with the number of records dropped
// since the last summary, if any. The writer calls it just after the sink
// accepted a record, which is when the sink has recovered, and on Close.
func (s *sink) summarize() {
	n := s.dropped.Load() - s.reported
	if n == 0 {
		return
	}
	ctx := context.Background()
	if !s.base.Enabled(ctx, slog.LevelWarn) {
		s.reported += n
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "log records dropped", 0)
	r.AddAttrs(slog.Uint64("count", n))
	if s.handle(item{ctx: ctx, h: s.base, r: r}) {
		s.reported += n
		if s.out != nil {
			s.out.announced += n // written only once the buffer is
		}
	}
}

// handle writes it, with its function or its handler's Handle, and
// reports whether that succeeded; a panic is a failure, not the end of
// the writer.
func (s *sink) handle(it item) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	if it.job != nil {
		return it.job.Write(it.h) == nil
	}
	return it.h.Handle(it.ctx, it.r) == nil
}
