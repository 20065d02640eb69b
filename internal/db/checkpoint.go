package db

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
)

// A commit appends pages to the write-ahead log, and a checkpoint copies
// them back into the database file so the log can start over
// (https://www.sqlite.org/wal.html, "Checkpointing"). By default the
// connection whose commit takes the log past 1000 pages runs the
// checkpoint inside that commit. In serve that is the one connection
// greylist decisions and the decision log share, and at a few thousand
// decisions a second it stalled them several times a second, for 5 to
// 30 ms each (commit p99 13 ms, against 1 ms without).
//
// So serve checkpoints on a connection of its own every checkpointEvery,
// PASSIVE: it copies what it can without waiting for the writer or
// blocking it (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html). The
// writer's own automatic checkpoint stays, at walAutoCheckpoint pages,
// as the bound on the log's size: under constant writes a passive
// checkpoint never finds the log idle, so only the writer's own lets the
// next commit start the log over. It copies what the last passive one
// left, so they run often: measured with 64 busy connections, the
// greylist commit p99 was 8-12 ms with 50 ms between them and 3-4 ms
// with 10 ms (and the decision log's transactions p99 20-25 ms and 12-15
// ms), for about a tenth more CPU per request.
// Durability is unchanged: with synchronous=NORMAL a checkpoint syncs the
// log before it copies and the database file after
// (https://www.sqlite.org/pragma.html#pragma_synchronous).
const (
	checkpointEvery   = 10 * time.Millisecond
	walAutoCheckpoint = 4000 // pages: a log of at most about 16 MiB with 4 KiB pages
)

// startCheckpointer runs passive checkpoints of the SQLite file at path
// until stop is called. It also raises the automatic checkpoint of d's
// connection to walAutoCheckpoint; the setting is per connection, and d
// keeps its one connection for its life (openSQLite). Were the driver to
// replace it, the new one would checkpoint at SQLite's default again:
// more often, never wrong.
func startCheckpointer(ctx context.Context, d *DB, path string, log *slog.Logger) (stop func(), err error) {
	if _, err := d.SQL.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", walAutoCheckpoint)); err != nil {
		return nil, fmt.Errorf("db: %s: set wal_autocheckpoint: %w", path, err)
	}
	ck, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		return nil, fmt.Errorf("db: open %s for checkpoints: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	ck.SetConnMaxLifetime(0)
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		checkpoints(cctx, ck, log)
	}()
	return func() {
		cancel()
		<-done
		_ = ck.Close()
	}, nil
}

// checkpoints runs a passive checkpoint every checkpointEvery until ctx
// ends. A failure is logged when it starts and when it ends, not every
// time: the writer's automatic checkpoint still bounds the log meanwhile.
func checkpoints(ctx context.Context, ck *sql.DB, log *slog.Logger) {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := panics.Call(func() error {
			_, err := ck.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
			return err
		})
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			log.Warn("SQLite checkpoints failing; the writer checkpoints meanwhile", "err", err)
			failing = true
		case err == nil && failing:
			log.Info("SQLite checkpoints work again")
			failing = false
		}
	}
}
