package db

import (
	"context"
	"time"
)

// SQLiteDeleteBatches runs del, which deletes at most batch rows in one
// statement (its own transaction) and returns how many it deleted, until a
// batch comes back short; it returns the rows deleted in all.
//
// Between two batches it pauses for as long as the batch took, and at
// least sqliteBatchPause. SQLite has one write lock per file, and a
// process waiting for it (the daemon, while `mxpolicyd gc` runs from a
// timer) is not queued: its busy handler sleeps and tries again
// (sqliteDefaultBusyCallback in SQLite's main.c: after 1, 2, 5, 10, 15,
// 20 and 25 ms, later every 50 and then 100 ms), and a loop that starts
// its next batch as soon as one commits takes the lock again first. With
// no pause, greylisting decisions waited up to 1.2 s while a gc removed
// 500,000 triplets in 1.2 s; with these pauses, 24 to 38 ms, the gc taking
// 3.7 to 3.8 s (e2e/gcbeside_test.go). A pause as long as the batch covers
// the waiter's longer sleeps after a long batch. The daemon's own gc,
// which shares its one connection with the decisions, pauses too, at no
// cost to them.
func SQLiteDeleteBatches(ctx context.Context, batch int64, del func(context.Context) (int64, error)) (int64, error) {
	return deleteBatches(ctx, batch, del, time.Now, Pause)
}

// sqliteBatchPause is the shortest pause between two batches: the
// longest sleep of SQLite's busy handler in its first 128 ms of waiting.
const sqliteBatchPause = 25 * time.Millisecond

// deleteBatches is SQLiteDeleteBatches with its clock and its wait given.
func deleteBatches(ctx context.Context, batch int64, del func(context.Context) (int64, error),
	now func() time.Time, wait func(context.Context, time.Duration) error) (int64, error) {
	var total int64
	for {
		start := now()
		n, err := del(ctx)
		total += n
		if err != nil || n < batch {
			return total, err
		}
		if err := wait(ctx, max(now().Sub(start), sqliteBatchPause)); err != nil {
			return total, err
		}
	}
}

// Pause waits d, or until ctx ends (its error).
func Pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
