package asynclog

import (
	"io"
	"log/slog"
)

// NewBuffered is New for a handler that writes to w, which build makes:
// its output goes through a buffer the writer goroutine flushes whenever
// the queue is empty (or the buffer holds flushAt bytes), and once the
// queue is empty the writer lets records gather for pauseFor before it
// looks again. Under load one wake-up and one write(2) carry many records
// instead of one each; a record that comes alone is written within a
// millisecond. A flush that fails loses the records in it, and they are
// counted as dropped.
func NewBuffered(w io.Writer, build func(io.Writer) slog.Handler, opt Options) *Handler {
	out := &buffer{w: w}
	return start(build(out), opt, out)
}

// flushAt is how many bytes the buffer gathers at most before it is
// written: a few dozen decision lines.
const flushAt = 32 << 10

// buffer gathers what the handlers write, for the writer goroutine alone.
type buffer struct {
	w         io.Writer
	buf       []byte
	records   int    // records in buf
	announced uint64 // dropped records a summary in buf announces
}

// Write appends p; it never fails, so a handler's record is taken whole.
func (b *buffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// flush writes what was gathered and returns how many records a failed
// write lost, and how many dropped records the summaries it lost had
// announced (they must be announced again). The buffer is emptied either
// way: a sink that failed once gets the next records afresh.
func (b *buffer) flush() (lost int, unannounced uint64) {
	if len(b.buf) == 0 {
		return 0, 0
	}
	_, err := b.w.Write(b.buf)
	if err != nil {
		lost, unannounced = b.records, b.announced
	}
	b.buf, b.records, b.announced = b.buf[:0], 0, 0
	if cap(b.buf) > 4*flushAt {
		b.buf = nil // a burst's growth is not kept
	}
	return lost, unannounced
}
