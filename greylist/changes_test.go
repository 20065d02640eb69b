package greylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
)

// The change counter's poll survives what its read may do: fail while the
// database is down (quietly: the connector says so), fail otherwise
// (one warning per outage, one line when it works again), panic in the
// driver (a failure like the others), hang (bounded by pollTimeout).
func TestChangesPollFailures(t *testing.T) {
	var next func(ctx context.Context) (int64, error)
	logs := &logtest.Buffer{}
	ch := &Changes{
		version: func(ctx context.Context) (int64, error) { return next(ctx) },
		log:     slog.New(slog.NewTextHandler(logs, nil)),
		last:    -1,
	}
	ctx := context.Background()
	poll := func(f func(ctx context.Context) (int64, error)) { next = f; ch.Poll(ctx) }

	poll(func(context.Context) (int64, error) { return 0, fmt.Errorf("read: %w", db.ErrUnavailable) })
	poll(func(context.Context) (int64, error) { return 3, nil })
	if ch.gen.Load() != 1 {
		t.Fatalf("first read: %d changes, want 1", ch.gen.Load())
	}
	poll(func(context.Context) (int64, error) { panic("driver bug") })
	poll(func(context.Context) (int64, error) { return 0, errors.New("permission denied") })
	poll(func(ctx context.Context) (int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a poll without a deadline")
		}
		return 4, nil
	})
	if ch.gen.Load() != 2 {
		t.Errorf("after the counter moved: %d changes, want 2", ch.gen.Load())
	}
	out := logs.String()
	for s, n := range map[string]int{
		"level=WARN msg=\"greylist: reading the change counter failed": 1,
		"driver bug":                       1,
		"the change counter is read again": 1,
		"level=WARN msg=\"greylist: change counter not read": 0,
	} {
		if got := strings.Count(out, s); got != n {
			t.Errorf("log has %q %d times, want %d:\n%s", s, got, n, out)
		}
	}
}
