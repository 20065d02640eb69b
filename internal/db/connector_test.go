package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// fakeServer is the connector's dial seam: the probe and prepare answer
// what the test sets.
type fakeServer struct {
	mu         sync.Mutex
	probeErr   error
	prepareErr error
	prepares   int
}

func (f *fakeServer) set(probe, prepare error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probeErr, f.prepareErr = probe, prepare
}

func (f *fakeServer) probe(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probeErr
}

func (f *fakeServer) prepare(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ctx.Value(bypassKey{}) == nil {
		return errors.New("prepare ran without the gate bypass")
	}
	f.prepares++
	return f.prepareErr
}

// fakeClock is the connector's clock seam: each wait is reported on
// waits and ends when the test sends on tick.
type fakeClock struct {
	waits chan time.Duration
	tick  chan time.Time
}

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	c.waits <- d
	return c.tick
}

func (c *fakeClock) step(t *testing.T, want time.Duration) {
	t.Helper()
	select {
	case got := <-c.waits:
		if got != want {
			t.Fatalf("connector waits %v, want %v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("connector never waited (want %v)", want)
	}
}

func (c *fakeClock) next() { c.tick <- time.Time{} }

func TestConnectorStateMachine(t *testing.T) {
	srv := &fakeServer{}
	clk := &fakeClock{waits: make(chan time.Duration), tick: make(chan time.Time)}
	logs := &logtest.Buffer{}
	c := newConnector(srv.probe, srv.prepare, slog.New(slog.NewTextHandler(logs, nil)))
	c.after = clk.after
	var downs atomic.Int32
	c.onDown = func() { downs.Add(1) }
	if !errors.Is(c.ready(), ErrUnavailable) {
		t.Fatalf("a new connector is %v, want not reachable", c.ready())
	}
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	srv.set(refused, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	defer func() { cancel(); <-done }()

	// Down at start: the waits double up to the cap.
	for i, want := range []time.Duration{1, 2, 4, 5, 5} {
		if i > 0 {
			clk.next()
		}
		clk.step(t, want*time.Second)
		if c.ready() != ErrUnavailable {
			t.Fatalf("state %v, want ErrUnavailable", c.ready())
		}
	}
	// Reachable, but the migrations fail: not ready, for another reason.
	// (The test changes the server only while the connector waits.)
	srv.set(nil, errors.New("permission denied for schema public"))
	clk.next()
	clk.step(t, 5*time.Second)
	if c.ready() != ErrMigrationsPending || !errors.Is(c.ready(), ErrUnavailable) {
		t.Fatalf("state %v, want ErrMigrationsPending matching ErrUnavailable", c.ready())
	}
	// Then they pass: ready, probed every liveEvery, prepared once.
	srv.set(nil, nil)
	clk.next()
	clk.step(t, liveEvery)
	if c.ready() != nil {
		t.Fatalf("state %v, want ready", c.ready())
	}
	clk.next()
	clk.step(t, liveEvery)
	if srv.prepares != 2 { // the failed one and the good one
		t.Fatalf("prepare ran %d times, want 2", srv.prepares)
	}
	// A runtime outage: down at once, the backoff starts over, the pool is
	// emptied once; recovery prepares again.
	srv.set(context.DeadlineExceeded, nil)
	clk.next()
	clk.step(t, backoffMin)
	clk.next()
	clk.step(t, 2*backoffMin)
	if c.ready() != ErrUnavailable || downs.Load() != 1 {
		t.Fatalf("state %v, onDown %d; want ErrUnavailable, 1", c.ready(), downs.Load())
	}
	srv.set(nil, nil)
	clk.next()
	clk.step(t, liveEvery)
	if c.ready() != nil || srv.prepares != 3 {
		t.Fatalf("state %v, prepares %d; want ready, 3", c.ready(), srv.prepares)
	}
	// One line per change of state, never one per attempt.
	for s, n := range map[string]int{
		"database not reachable; greylisting": 2,
		"database schema not ready":           1,
		"msg=\"database ready\"":              1,
		"database reachable again":            1,
	} {
		if got := strings.Count(logs.String(), s); got != n {
			t.Errorf("log has %q %d times, want %d:\n%s", s, got, n, logs)
		}
	}
}

// A panic in an attempt (pgx, a migration) fails that attempt: logged
// with its stack, the store not ready, retried with the backoff; the
// next good attempt makes it ready again.
func TestConnectorSurvivesPanic(t *testing.T) {
	var boom atomic.Bool
	boom.Store(true)
	probe := func(context.Context) error {
		if boom.Load() {
			panic("driver bug")
		}
		return nil
	}
	srv := &fakeServer{}
	clk := &fakeClock{waits: make(chan time.Duration), tick: make(chan time.Time)}
	logs := &logtest.Buffer{}
	c := newConnector(probe, srv.prepare, slog.New(slog.NewTextHandler(logs, nil)))
	c.after = clk.after
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	defer func() { cancel(); <-done }()

	clk.step(t, backoffMin)
	clk.next()
	clk.step(t, 2*backoffMin)
	if c.ready() != ErrUnavailable {
		t.Fatalf("after panics: state %v, want ErrUnavailable", c.ready())
	}
	if !strings.Contains(logs.String(), "panic=\"driver bug\"") || !strings.Contains(logs.String(), "TestConnectorSurvivesPanic") {
		t.Errorf("the panic is not logged with its stack:\n%s", logs)
	}
	boom.Store(false)
	clk.next()
	clk.step(t, liveEvery)
	if c.ready() != nil {
		t.Fatalf("after a good attempt: state %v, want ready", c.ready())
	}
}

// While PostgreSQL is down, Start returns at once and every query fails
// at once with the classified error; the password is never logged.
func TestStartWhileDownFailsFast(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	dsn := fmt.Sprintf("postgres://mx:s3cret@127.0.0.1:%d/mx", port)
	prepared := false
	d, err := Start(ctxT(t), dsn, StartOptions{
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Prepare: func(context.Context, *DB) error { prepared = true; return nil },
	})
	if err != nil {
		t.Fatalf("Start with the server down: %v", err)
	}
	defer d.Close()
	if !errors.Is(d.Ready(), ErrUnavailable) {
		t.Fatalf("Ready() = %v, want ErrUnavailable", d.Ready())
	}
	// A context without a deadline: only the gate can make this return.
	_, err = d.PG.Exec(context.Background(), "SELECT 1")
	if !errors.Is(err, ErrUnavailable) || !IsTemporary(err) {
		t.Fatalf("query while down = %v, want a temporary ErrUnavailable", err)
	}
	// Bounded, so a missing log line fails the test instead of hanging it.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), "database not reachable") == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no \"database not reachable\" log line within 10s:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.Close()
	if prepared {
		t.Error("Prepare ran although the server never answered")
	}
	if strings.Count(logs.String(), "s3cret") > 0 {
		t.Errorf("log leaks the password:\n%s", logs)
	}
}

// Against a server that answers, Start becomes ready after Prepare, and
// Prepare may query before the store is ready.
func TestStartBecomesReady(t *testing.T) {
	ctx := ctxT(t)
	d, err := Start(ctx, pgtest.New(t), StartOptions{Prepare: func(ctx context.Context, d *DB) error {
		_, err := d.PG.Exec(ctx, "CREATE TABLE prepared (x int)")
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	waitReady(ctx, t, d)
	if _, err := d.PG.Exec(ctx, "INSERT INTO prepared VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// pg_stat_activity names the daemon's sessions, the probe's included.
	var named int
	err = d.PG.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'mxpolicyd serve'`).Scan(&named)
	if err != nil || named < 2 {
		t.Errorf("%d sessions named \"mxpolicyd serve\" (%v), want the probe's and the pool's", named, err)
	}
}

// check writes nothing: a missing SQLite file is an error, not created; an
// existing one refuses writes.
func TestOpenReadOnlySQLite(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "sub", "missing.db")
	if _, err := OpenReadOnly(ctx, missing, nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenReadOnly(missing) = %v, want not-exist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenReadOnly created the directory: %v", err)
	}
	path := filepath.Join(dir, "mx.db")
	rw, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.SQL.ExecContext(ctx, "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	assertReadOnly(t, path, "SELECT count(*) FROM t", "INSERT INTO t VALUES (1)")
}

func TestOpenReadOnlyPostgres(t *testing.T) {
	assertReadOnly(t, pgtest.New(t), "SELECT 1", "CREATE TABLE t (x int)")
}

// assertReadOnly opens dsn read-only: read must run, write be refused.
func assertReadOnly(t *testing.T, dsn, read, write string) {
	t.Helper()
	ctx := ctxT(t)
	ro, err := OpenReadOnly(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	exec := func(q string) (err error) {
		if ro.IsPostgres() {
			_, err = ro.PG.Exec(ctx, q)
		} else {
			_, err = ro.SQL.ExecContext(ctx, q)
		}
		return err
	}
	if err := exec(read); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := exec(write); err == nil {
		t.Fatalf("a read-only %s store accepted a write", ro.Kind())
	}
}

// A SQLite file that cannot be opened is a local fault: Start fails.
func TestStartSQLiteFailsAtOnce(t *testing.T) {
	if _, err := Start(ctxT(t), "/proc/self/no/such/dir/mx.db", StartOptions{}); err == nil {
		t.Fatal("Start succeeded on a SQLite path that cannot be created")
	}
	prepErr := errors.New("migration failed")
	_, err := Start(ctxT(t), filepath.Join(t.TempDir(), "mx.db"), StartOptions{
		Prepare: func(context.Context, *DB) error { return prepErr },
	})
	if !errors.Is(err, prepErr) {
		t.Fatalf("Start with a failing Prepare on SQLite = %v, want its error", err)
	}
}

// A server that answers but takes no writes (here every session's
// default_transaction_read_only; a hot standby alike) is not ready, and
// /readyz and the log say why.
func TestStartOnReadOnlyServer(t *testing.T) {
	ctx := ctxT(t)
	var logs logtest.Buffer
	dsn := pgtest.New(t) + "&options=-c%20default_transaction_read_only%3Don"
	d, err := Start(ctx, dsn, StartOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for !strings.Contains(logs.String(), "database is read-only") {
		select {
		case <-ctx.Done():
			t.Fatalf("no line about a read-only database:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := d.Ready(); !errors.Is(err, ErrReadOnly) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready() = %v, want ErrReadOnly, which is ErrUnavailable (requests fail fast)", err)
	}
}

// waitReady waits for d's store to be ready, until ctx ends.
func waitReady(ctx context.Context, t *testing.T, d *DB) {
	t.Helper()
	for d.Ready() != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("never ready: %v", d.Ready())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
