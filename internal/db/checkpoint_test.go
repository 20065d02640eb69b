package db

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Start on SQLite copies committed pages into the database file in the
// background, long before the writer's own checkpoint would, and Close
// stops it.
func TestStartSQLiteCheckpoints(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "mx.db")
	d, err := Start(ctx, path, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var pages int
	if err := d.SQL.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil || pages != walAutoCheckpoint {
		t.Fatalf("wal_autocheckpoint = %d, %v; want %d", pages, err, walAutoCheckpoint)
	}
	// About 250 pages: far below the writer's threshold.
	if _, err := d.SQL.ExecContext(ctx, "CREATE TABLE t (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	tx, err := d.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (?)", strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(checkpointBusy) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1_000_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes: nothing checkpointed", fi.Size())
		}
	}
}

// A checkpoint is due at every tick from the moment busyWaits waits are
// counted within a second, until a whole second counts fewer; otherwise
// every checkpointCalm.
func TestCheckpointSchedule(t *testing.T) {
	var s schedule
	var w int64
	// run ticks n times, adding a wait at every tick in waitAt, and
	// returns the ticks (1 to n) at which a checkpoint was due.
	run := func(n int, waitAt func(int) bool) (due []int) {
		for i := 1; i <= n; i++ {
			if waitAt(i) {
				w++
			}
			if s.due(w) {
				due = append(due, i)
			}
		}
		return due
	}
	never := func(int) bool { return false }
	calm := int(checkpointCalm / checkpointBusy)
	every := func(from, to, step int) (ticks []int) {
		for i := from; i <= to; i += step {
			ticks = append(ticks, i)
		}
		return ticks
	}
	// A calm store: the pollers' few waits a second.
	if got, want := run(2*windowTicks, func(i int) bool { return i%(windowTicks/5) == 0 }), every(calm, 2*windowTicks, calm); !slices.Equal(got, want) {
		t.Fatalf("5 waits a second: due at %v, want %v", got, want)
	}
	// busyWaits waits within the third window: busy from the last of them
	// until the fourth window, which counts none, has ended.
	from := windowTicks / 2
	got := run(2*windowTicks, func(i int) bool { return i > from-busyWaits && i <= from })
	want := append(every(calm, from-1, calm), every(from, 2*windowTicks-1, 1)...)
	if !slices.Equal(got, want) {
		t.Fatalf("%d waits by tick %d: due at %v, want %v", busyWaits, from, got, want)
	}
	if got, want := run(windowTicks, never), every(calm-1, windowTicks, calm); !slices.Equal(got, want) {
		t.Fatalf("a window with no wait after a busy one: due at %v, want %v", got, want)
	}
}
