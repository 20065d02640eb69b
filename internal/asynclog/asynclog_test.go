package asynclog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangGuard fires when a test should give up waiting and call the
// handler hung: at the test's deadline less a margin to report, or after
// a minute without one. It guards against a hang; it measures nothing.
func hangGuard(t *testing.T) <-chan time.Time {
	d := time.Minute
	if dl, ok := t.Deadline(); ok {
		d = time.Until(dl) - 5*time.Second
	}
	return time.After(d)
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-hangGuard(t):
		t.Fatalf("%s: hung", what)
	}
}

// countObs is an Observer that adds up what it is told.
type countObs struct{ n atomic.Int64 }

func (o *countObs) LogRecordsDropped(n int) { o.n.Add(int64(n)) }

// noTime drops the time attribute, so two handlers' output compares.
func noTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

// readLines scans r into a channel until r ends.
func readLines(r io.Reader) <-chan string {
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return lines
}

// nextWith returns the next line containing s, and the lines skipped.
func nextWith(t *testing.T, lines <-chan string, s string) (line string, skipped int) {
	t.Helper()
	guard := hangGuard(t)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before a line with %q", s)
			}
			if strings.Contains(l, s) {
				return l, skipped
			}
			skipped++
		case <-guard:
			t.Fatalf("no line with %q: hung", s)
		}
	}
}

// A sink nobody reads (a pipe whose reader is stuck) must not hold up a
// single Info call; the records it cannot take are dropped, counted, and
// announced once it reads again.
func TestStuckSinkNeverBlocks(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	obs := &countObs{}
	const queue, goroutines, each = 16, 20, 500
	h := New(slog.NewTextHandler(pw, nil), Options{QueueSize: queue, Observer: obs})
	log := slog.New(h)
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					log.Info("decision", "g", g, "i", i)
				}
			})
		}
		wg.Wait()
		close(done)
	}()
	waitClosed(t, done, "Info with a stuck sink")

	dropped := h.Dropped()
	// The writer holds one record, blocked in Write; the queue the rest.
	if min := uint64(goroutines*each - queue - 1); dropped < min || int64(dropped) != obs.n.Load() {
		t.Fatalf("Dropped() = %d, observer saw %d; want the same, at least %d", dropped, obs.n.Load(), min)
	}

	lines := readLines(pr)
	summary, before := nextWith(t, lines, "log records dropped")
	if want := fmt.Sprintf("level=WARN msg=\"log records dropped\" count=%d", dropped); !strings.Contains(summary, want) {
		t.Errorf("summary %q, want it to contain %q", summary, want)
	}
	if before != 1 {
		t.Errorf("%d lines before the summary, want 1 (the record the sink was stuck on)", before)
	}
	// The records kept were written; once they are read the queue is
	// empty, so the next record is taken and flows.
	for range goroutines*each - int(dropped) - before {
		nextWith(t, lines, "msg=decision")
	}
	log.Info("after", "k", "v")
	if _, skipped := nextWith(t, lines, "msg=after k=v"); skipped != 0 {
		t.Errorf("%d unexpected lines before the record after recovery", skipped)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.Dropped() != dropped {
		t.Errorf("Dropped() = %d after recovery, want still %d", h.Dropped(), dropped)
	}
}

// Derived handlers must write exactly what the inner handler would.
func TestDerivedHandlersWriteLikeInner(t *testing.T) {
	exercise := func(l *slog.Logger) {
		l.Info("plain", "k", 1)
		l.With("client", "192.0.2.1").WithGroup("req").With("id", 7).Info("grouped", "sender", "a@example.org")
		l.WithGroup("g").Info("nested", slog.Group("sub", "x", 1))
		l.With("a", 1).Warn("attrs", "b", 2)
		l.Debug("below the level")
	}
	opts := &slog.HandlerOptions{ReplaceAttr: noTime}
	kinds := map[string]func(io.Writer) slog.Handler{
		"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) },
		"json": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) },
	}
	for name, mk := range kinds {
		t.Run(name, func(t *testing.T) {
			var want, got bytes.Buffer
			exercise(slog.New(mk(&want)))
			h := New(mk(&got), Options{})
			exercise(slog.New(h))
			if err := h.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("got\n%s\nwant\n%s", got.String(), want.String())
			}
		})
	}
}

func TestEnabledAsksInner(t *testing.T) {
	h := New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}), Options{})
	defer h.Close(context.Background())
	ctx := context.Background()
	if h.Enabled(ctx, slog.LevelInfo) || !h.Enabled(ctx, slog.LevelWarn) {
		t.Error("Enabled does not follow the inner handler's level")
	}
	if h.WithGroup("g").Enabled(ctx, slog.LevelInfo) {
		t.Error("a derived handler does not follow the inner handler's level")
	}
}

// gated blocks every Handle until open is closed.
type gated struct {
	slog.Handler
	open chan struct{}
}

func (g gated) Handle(ctx context.Context, r slog.Record) error {
	<-g.open
	return g.Handler.Handle(ctx, r)
}

// Close writes everything queued before it returns.
func TestCloseFlushes(t *testing.T) {
	var buf bytes.Buffer
	g := gated{slog.NewTextHandler(&buf, nil), make(chan struct{})}
	h := New(g, Options{})
	for i := range 100 {
		slog.New(h).Info("queued", "i", i)
	}
	close(g.open)
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "msg=queued"); n != 100 || h.Dropped() != 0 {
		t.Fatalf("%d records written, %d dropped; want 100 and 0", n, h.Dropped())
	}
}

// Close gives up when its context ends before a stuck sink takes the
// queue, and records after Close are dropped and counted.
func TestCloseHonoursContext(t *testing.T) {
	pr, pw := io.Pipe()
	h := New(slog.NewTextHandler(pw, nil), Options{})
	log := slog.New(h)
	log.Info("stuck")
	log.Info("queued")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	log.Info("after close")
	if h.Dropped() != 1 {
		t.Errorf("Dropped() = %d, want 1 (the record after Close)", h.Dropped())
	}
	pr.Close() // the stuck writes fail; the writer finishes
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.Dropped() != 3 {
		t.Errorf("Dropped() = %d, want 3 (two failed writes and the record after Close)", h.Dropped())
	}
}

// panicky panics on the record "boom", like a handler with a bug.
type panicky struct{ slog.Handler }

func (p panicky) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "boom" {
		panic("handler bug")
	}
	return p.Handler.Handle(ctx, r)
}

// A panicking inner handler costs its record, not the writer.
func TestInnerPanicKeepsWriter(t *testing.T) {
	var buf bytes.Buffer
	obs := &countObs{}
	h := New(panicky{slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: noTime})},
		Options{Observer: obs})
	log := slog.New(h)
	log.Info("a")
	log.Info("boom")
	log.Info("b")
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "level=INFO msg=a\nlevel=INFO msg=b\nlevel=WARN msg=\"log records dropped\" count=1\n"
	if buf.String() != want || h.Dropped() != 1 || obs.n.Load() != 1 {
		t.Fatalf("output\n%s\ndropped %d, observer %d; want\n%s\ndropped 1", buf.String(),
			h.Dropped(), obs.n.Load(), want)
	}
}

// Records dropped before there is an observer reach it when it is set,
// and none is reported twice.
func TestSetObserverReportsEarlierDrops(t *testing.T) {
	pr, pw := io.Pipe()
	h := New(slog.NewTextHandler(pw, nil), Options{QueueSize: 1})
	defer h.Close(context.Background())
	defer pr.Close() // first: unblock the writer so Close can finish
	log := slog.New(h)
	for range 10 {
		log.Info("before")
	}
	obs := &countObs{}
	h.SetObserver(obs)
	for range 10 {
		log.Info("after")
	}
	if h.Dropped() < 18 || obs.n.Load() != int64(h.Dropped()) {
		t.Fatalf("Dropped() = %d, observer saw %d; want the same, at least 18", h.Dropped(), obs.n.Load())
	}
}

// HandleJob's jobs run on the writer in queue order with the
// records, each given the handler its Handler passes records to (a
// derived one's, with its attributes); one that fails or panics is
// counted as a dropped record.
func TestHandleJob(t *testing.T) {
	var buf bytes.Buffer
	obs := &countObs{}
	h := NewBuffered(&buf, func(w io.Writer) slog.Handler {
		return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime})
	}, Options{Observer: obs})
	log := slog.New(h)
	write := func(h *Handler, msg string) {
		h.HandleJob(JobFunc(func(inner slog.Handler) error {
			return inner.Handle(context.Background(), slog.NewRecord(time.Time{}, slog.LevelInfo, msg, 0))
		}))
	}
	log.Info("first")
	write(h, "second")
	write(log.With("conn", 7).Handler().(*Handler), "derived")
	h.HandleJob(JobFunc(func(slog.Handler) error { return errors.New("sink failed") }))
	h.HandleJob(JobFunc(func(slog.Handler) error { panic("boom") }))
	log.Info("last")
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "level=INFO msg=first\nlevel=INFO msg=second\nlevel=INFO msg=derived conn=7\nlevel=INFO msg=last\n" +
		"level=WARN msg=\"log records dropped\" count=2\n"
	if buf.String() != want || h.Dropped() != 2 || obs.n.Load() != 2 {
		t.Fatalf("output\n%s\ndropped %d, observer %d; want\n%s\ndropped 2", buf.String(), h.Dropped(), obs.n.Load(), want)
	}
	write(h, "after close")
	if h.Dropped() != 3 {
		t.Errorf("a function queued after Close: dropped %d, want 3", h.Dropped())
	}
}
