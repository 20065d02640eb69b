package asynclog

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// flakyWriter fails every write while fail is set, then takes them.
type flakyWriter struct {
	mu   sync.Mutex
	fail bool
	out  strings.Builder
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return 0, errors.New("sink gone")
	}
	return w.out.Write(p)
}

func (w *flakyWriter) set(fail bool) { w.mu.Lock(); w.fail = fail; w.mu.Unlock() }

func (w *flakyWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.out.String() }

func waitDropped(t *testing.T, h *Handler, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); h.Dropped() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Dropped() = %d, want %d", h.Dropped(), n)
		}
	}
}

// Once the sink takes lines again, one "log records dropped count=N"
// warning says how many were lost (README): also when the first summary,
// written into NewBuffered's buffer, was lost with a failed flush.
func TestSummaryLostWithAFailedFlushIsOwed(t *testing.T) {
	w := &flakyWriter{fail: true}
	h := NewBuffered(w, text, Options{})
	log := slog.New(h)
	log.Info("a")
	waitDropped(t, h, 1) // a's flush failed
	log.Info("b")        // b, then a summary count=1, both in one failed flush
	waitDropped(t, h, 2)
	w.set(false) // the sink recovers
	log.Info("c")
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := w.String()
	announced := uint64(0)
	for _, m := range regexp.MustCompile(`msg="log records dropped" count=(\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		announced += n
	}
	if announced != h.Dropped() {
		t.Fatalf("summaries announce %d lost records, Dropped() = %d; output:\n%s", announced, h.Dropped(), out)
	}
}

// countHandler counts the records it is given.
type countHandler struct {
	mu sync.Mutex
	n  int
}

func (c *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (c *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "log records dropped" {
		return nil // the writer's own summary
	}
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return nil
}
func (c *countHandler) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *countHandler) WithGroup(string) slog.Handler      { return c }

// Every record given to Handle is either written or counted in Dropped,
// also when Handle races with Close: Close waits for a Handle that read
// closed == false to queue before the writer's final drain.
func TestHandleRacingCloseIsCounted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var attrs []slog.Attr
	for i := range 12 {
		attrs = append(attrs, slog.Int("k"+strconv.Itoa(i), i))
	}
	deadline := time.Now().Add(2 * time.Second) // the race shows within a few iterations
	for iter := 0; time.Now().Before(deadline); iter++ {
		inner := &countHandler{}
		h := New(inner, Options{QueueSize: 1 << 16})
		var wg sync.WaitGroup
		var sent [4]int
		stop := make(chan struct{})
		for g := range sent {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
					r.AddAttrs(attrs...)
					_ = h.Handle(ctx, r)
					sent[g]++
				}
			})
		}
		time.Sleep(50 * time.Microsecond)
		if err := h.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Microsecond)
		close(stop)
		wg.Wait()
		total := 0
		for _, n := range sent {
			total += n
		}
		inner.mu.Lock()
		written := inner.n
		inner.mu.Unlock()
		if uint64(written)+h.Dropped() != uint64(total) {
			t.Fatalf("iteration %d: %d records handled, %d written + %d dropped = %d; %d lost uncounted (left in the queue: %d)",
				iter, total, written, h.Dropped(), uint64(written)+h.Dropped(), uint64(total)-uint64(written)-h.Dropped(), len(h.s.queue))
		}
	}
}
