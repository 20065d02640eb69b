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
// So serve checkpoints on a connection of its own, PASSIVE: it copies
// what it can without waiting for the writer or blocking it
// (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html). The writer's own
// automatic checkpoint stays, at walAutoCheckpoint pages, as the bound on
// the log's size: under constant writes a passive checkpoint never finds
// the log idle, so only the writer's own lets the next commit start the
// log over. It copies what the last passive one left, so while requests
// wait for the store's connection, passive ones run often, every
// checkpointBusy: measured with 64 busy connections on new triplets, the
// greylist commit p99 was 8-12 ms with 50 ms between them and 3-4 ms
// with 10 ms (and the decision log's transactions p99 20-25 ms and 12-15
// ms), for about a tenth more CPU per request.
//
// That commit still syncs both files, and every request of its group and
// of the group queued behind it waits: 5 to 30 ms, where a commit takes
// 0.5 ms at the median. At 9,000 new triplets a second the log reached
// 4,000 pages every quarter second, and those commits made greylisting's
// p99. So the bound is walAutoCheckpoint, 32,768 pages: the same stall
// about every two and a half seconds at that rate (docs/PERFORMANCE.md,
// "SQLite's new triplets on a slow machine"). The price is disk: the
// log's file keeps the size it reached, and it reaches the bound (about
// 128 MiB with 4 KiB pages) at any steady rate at which a commit lands
// during every passive checkpoint: 555 new triplets a second on one
// connection filled it in 15 s.
//
// While nothing waits for that connection (greylisting answers from
// memory and only the decision log writes), a checkpoint inside the
// writer's commit holds up nobody but the decision log, and each passive
// one copies again the pages every commit rewrites (the last leaf of
// the table and of each index). Then they run every checkpointCalm:
// with 64 busy connections on known triplets, the daemon answered about
// a fifth more requests a second than with one every 10 ms
// (docs/PERFORMANCE.md, "Checkpoints").
//
// Durability is unchanged: with synchronous=NORMAL a checkpoint syncs the
// log before it copies and the database file after
// (https://www.sqlite.org/pragma.html#pragma_synchronous).
const (
	checkpointBusy    = 10 * time.Millisecond
	checkpointCalm    = 200 * time.Millisecond
	walAutoCheckpoint = 32768 // pages: a log of at most about 128 MiB with 4 KiB pages
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
		checkpoints(cctx, ck, func() int64 { return d.SQL.Stats().WaitCount }, log)
	}()
	return func() {
		cancel()
		<-done
		_ = ck.Close()
	}, nil
}

// checkpoints runs a passive checkpoint every checkpointBusy while
// requests wait for the store's connection (waits is database/sql's count
// of waits), and every checkpointCalm while they do not (schedule), until
// ctx ends. A failure is
// logged when it starts and when it ends, not every time: the writer's
// automatic checkpoint still bounds the log meanwhile.
func checkpoints(ctx context.Context, ck *sql.DB, waits func() int64, log *slog.Logger) {
	t := time.NewTicker(checkpointBusy)
	defer t.Stop()
	failing := false
	sched := schedule{start: waits()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !sched.due(waits()) {
			continue
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

// schedule says, at each tick of checkpointBusy, whether a checkpoint is
// due: at every tick while the store is busy, and every checkpointCalm
// while it is not. The store is busy from the moment busyWaits waits for
// its connection have been counted within a window of a second, until a
// whole window counts fewer. Under load, greylisting's groups wait for
// the decision log's transactions and for each other 30 to 70 times a
// second (64 busy connections on new triplets); when greylisting answers
// from memory, the daemon's own once-a-second reads (the whitelist's and
// greylisting's change counters, whitelist.Checker.Run and
// greylist.Changes.Run) wait for the decision log's transactions up to
// five times a second.
type schedule struct {
	start int64 // the count of waits as the window began
	ticks int   // ticks of the window so far
	busy  bool
	since time.Duration // since the last checkpoint
}

const (
	busyWaits   = 10
	windowTicks = int(time.Second / checkpointBusy)
)

func (s *schedule) due(waits int64) bool {
	if waits-s.start >= busyWaits {
		s.busy = true
	}
	if s.ticks++; s.ticks == windowTicks {
		s.busy = waits-s.start >= busyWaits
		s.start, s.ticks = waits, 0
	}
	s.since += checkpointBusy
	if s.busy || s.since >= checkpointCalm {
		s.since = 0
		return true
	}
	return false
}
