package db

import (
	"os"
	"path/filepath"
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
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(checkpointEvery) {
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
