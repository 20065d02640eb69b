package db

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The batches run until one comes back short, with a pause between two
// batches (never after the last) as long as the batch took, and at least
// sqliteBatchPause; an error or the context's end stops them.
func TestDeleteBatches(t *testing.T) {
	ctx := context.Background()
	clock := time.Unix(0, 0)
	now := func() time.Time { return clock }
	sizes := []int64{10, 10, 10, 3}
	took := []time.Duration{time.Millisecond, 80 * time.Millisecond, 0, 0}
	var calls int
	var pauses []time.Duration
	del := func(context.Context) (int64, error) {
		clock = clock.Add(took[calls])
		calls++
		return sizes[calls-1], nil
	}
	wait := func(_ context.Context, d time.Duration) error { pauses = append(pauses, d); return nil }
	n, err := deleteBatches(ctx, 10, del, now, wait)
	if err != nil || n != 33 || calls != 4 {
		t.Fatalf("deleted %d in %d batches, %v; want 33 in 4", n, calls, err)
	}
	want := []time.Duration{sqliteBatchPause, 80 * time.Millisecond, sqliteBatchPause}
	if len(pauses) != len(want) || pauses[0] != want[0] || pauses[1] != want[1] || pauses[2] != want[2] {
		t.Errorf("pauses %v, want %v", pauses, want)
	}

	boom := errors.New("boom")
	calls, pauses = 0, nil
	n, err = deleteBatches(ctx, 10, func(context.Context) (int64, error) {
		calls++
		if calls == 2 {
			return 4, boom
		}
		return 10, nil
	}, now, wait)
	if !errors.Is(err, boom) || n != 14 || calls != 2 || len(pauses) != 1 {
		t.Errorf("with a failing batch: %d rows, %d calls, %d pauses, %v; want 14, 2, 1 and the error", n, calls, len(pauses), err)
	}

	// A context that ends during a pause ends the batches at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	calls = 0
	n, err = deleteBatches(cctx, 10, func(context.Context) (int64, error) { calls++; return 10, nil }, now, Pause)
	if !errors.Is(err, context.Canceled) || n != 10 || calls != 1 {
		t.Errorf("cancelled: %d rows, %d calls, %v; want 10, 1 and context.Canceled", n, calls, err)
	}
}
