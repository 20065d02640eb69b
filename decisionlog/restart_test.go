package decisionlog

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// A PostgreSQL server that goes down while a batch is on its way (stopped
// as in a crash, its connections gone) and is back within write_timeout
// costs no row: the writer sends the batch again. The test starts the
// server again from the writer's first wait, so the first try always
// meets it down.
func TestWriterRetriesAcrossRestart(t *testing.T) {
	s := pgtest.StartServer(t)
	d := dbtest.OpenDSN(t, s.CreateDatabase(t, "restart"))
	ctx := dbtest.Context(t)
	cfg := testConfig()
	cfg.WriteTimeout = 30 * time.Second
	var waits atomic.Int32
	restart := make(chan chan struct{})
	obs := newCounter()
	w := New(d, cfg, Options{Observer: obs, Tick: make(chan time.Time),
		Wait: func(ctx context.Context, _ time.Duration) error {
			if waits.Add(1) == 1 {
				ack := make(chan struct{})
				restart <- ack
				<-ack
			}
			return ctx.Err()
		}})
	defer w.Close(ctx)
	w.Record(decision(1))
	if err := w.Flush(ctx); err != nil { // the pool now holds a connection
		t.Fatal(err)
	}
	s.WaitFlushed(t, 10*time.Second) // committed asynchronously (pgLog.insert)
	s.Stop(t)
	for i := 2; i <= 4; i++ {
		w.Record(decision(i))
	}
	flushed := make(chan error, 1)
	go func() { flushed <- w.Flush(ctx) }()
	var err error
	select {
	case ack := <-restart:
		s.Start(t)
		close(ack)
		err = <-flushed
	case err = <-flushed: // no retry: the rows were dropped
	}
	if err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if waits.Load() == 0 || st.WriteError != 0 || obs.dropped.Load() != 0 || st.Written != 4 {
		t.Fatalf("stats %+v after %d waits, observer dropped %d; want 4 written, none dropped",
			st, waits.Load(), obs.dropped.Load())
	}
	if n := countRows(t, d); n != 4 {
		t.Fatalf("%d rows stored, want 4", n)
	}
}

// Only a failure that left the batch unstored and may go away by itself
// is retried; a COMMIT that failed may have stored it, and an error that
// will not go away (a bad row) would fail again.
func TestWriterRetriesOnlyUnstoredTemporaryFailures(t *testing.T) {
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	for _, c := range []struct {
		name    string
		err     error // of the first try; the second succeeds
		retried bool
	}{
		{"connect refused before the COMMIT", notStored{refused}, true},
		{"the COMMIT's connection lost", refused, false},
		{"a bad row", notStored{errors.New(`invalid input syntax for type inet: "x"`)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tries, waits atomic.Int32
			insert := func(_ context.Context, _ *db.DB, rows []Row, _ *storeWaits) (int, error) {
				if tries.Add(1) == 1 {
					return len(rows), c.err
				}
				return len(rows), nil
			}
			w := start(nil, testConfig(), Options{Tick: make(chan time.Time),
				Wait: func(ctx context.Context, _ time.Duration) error { waits.Add(1); return ctx.Err() }}, insert)
			ctx := dbtest.Context(t)
			defer w.Close(ctx)
			w.Record(decision(1))
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			st := w.Stats()
			if c.retried && (waits.Load() != 1 || st.Written != 1 || st.WriteError != 0) ||
				!c.retried && (waits.Load() != 0 || st.Written != 0 || st.WriteError != 1) {
				t.Fatalf("stats %+v after %d waits; retried: want %v", st, waits.Load(), c.retried)
			}
		})
	}
}

// Close does not wait for a database that is down: what it drains is
// tried once.
func TestWriterCloseDoesNotRetry(t *testing.T) {
	var waits atomic.Int32
	insert := func(_ context.Context, _ *db.DB, rows []Row, _ *storeWaits) (int, error) {
		return len(rows), notStored{fmt.Errorf("dial: %w", syscall.ECONNREFUSED)}
	}
	w := start(nil, testConfig(), Options{Tick: make(chan time.Time),
		Wait: func(ctx context.Context, _ time.Duration) error { waits.Add(1); return ctx.Err() }}, insert)
	w.Record(decision(1))
	if err := w.Close(dbtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); waits.Load() != 0 || st.WriteError != 1 {
		t.Fatalf("stats %+v after %d waits; want the row dropped at once", st, waits.Load())
	}
}
