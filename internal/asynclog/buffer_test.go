package asynclog

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// gatedWriter counts its writes and holds each until the test opens
// the gate, so records pile up in the queue behind the first.
type gatedWriter struct {
	gate   chan struct{}
	mu     sync.Mutex
	writes int
	out    strings.Builder
	fail   bool
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	<-w.gate
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	if w.fail {
		return 0, errors.New("sink gone")
	}
	return w.out.Write(p)
}

func (w *gatedWriter) result() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes, w.out.String()
}

func text(w io.Writer) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime})
}

// Records that queue up while the sink writes go out together, in order,
// none lost; a record alone goes out without waiting for company.
func TestBufferedGathersQueuedRecords(t *testing.T) {
	w := &gatedWriter{gate: make(chan struct{})}
	h := NewBuffered(w, text, Options{QueueSize: 1000})
	log := slog.New(h)
	log.Info("first") // taken at once: the queue was empty; its write waits at the gate
	const n = 200
	for i := range n {
		log.Info("queued", "i", i)
	}
	close(w.gate)
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	writes, out := w.result()
	if lines := strings.Count(out, "\n"); lines != n+1 || h.Dropped() != 0 {
		t.Fatalf("%d lines written, %d dropped; want %d and none", lines, h.Dropped(), n+1)
	}
	if writes > 10 {
		t.Errorf("%d writes for %d records queued together, want a few", writes, n+1)
	}
	if !strings.HasPrefix(out, "level=INFO msg=first\nlevel=INFO msg=queued i=0\n") ||
		!strings.HasSuffix(out, "msg=queued i=199\n") {
		t.Errorf("records out of order: %.80q ... %q", out, out[len(out)-40:])
	}
}

func TestBufferedWritesALoneRecordAtOnce(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	h := NewBuffered(pw, text, Options{})
	defer h.Close(context.Background())
	lines := readLines(pr)
	slog.New(h).Info("alone", "k", "v")
	if line, _ := nextWith(t, lines, "msg=alone"); line != "level=INFO msg=alone k=v" {
		t.Fatalf("got %q", line)
	}
	// The next one comes while the writer pauses, or after: either way
	// it is written without another record behind it.
	slog.New(h).Info("next")
	if line, _ := nextWith(t, lines, "msg=next"); line != "level=INFO msg=next" {
		t.Fatalf("got %q", line)
	}
}

// A write that fails loses the records in it; they are counted.
func TestBufferedFailedWriteCountsItsRecords(t *testing.T) {
	w := &gatedWriter{gate: make(chan struct{}), fail: true}
	obs := &countObs{}
	h := NewBuffered(w, text, Options{QueueSize: 100, Observer: obs})
	log := slog.New(h)
	log.Info("first")
	for range 20 {
		log.Info("queued")
	}
	close(w.gate)
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.Dropped() != 21 || obs.n.Load() != 21 {
		t.Fatalf("Dropped() = %d, observer %d; want all 21 records", h.Dropped(), obs.n.Load())
	}
}
