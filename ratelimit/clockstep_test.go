package ratelimit_test

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
)

// The host's clock steps back an hour (an NTP correction of a clock that
// ran fast, a VM restored) after a key used its burst. Under GCRA a key's
// TAT is never more than tau ahead of the clock that charged it, so one
// further ahead of now only says the clock went back: the key counts as
// having just spent its burst, and sends again one emission interval
// later, not once the clock has caught up an hour (README, "Rate
// limits": "a client that retries gets through as soon as the rate
// allows").
func TestBackwardClockStepDoesNotBlockKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		s := ratelimit.NewStore(d)
		// 1 message a second, a burst of 3.
		c := ratelimit.Cell{Rule: "per-user", Key: "alice", Inc: int64(time.Second), Tau: 3 * int64(time.Second)}
		take := func(at time.Time) bool {
			t.Helper()
			ok, err := s.Take(dbtest.Context(t), at, []ratelimit.Cell{c})
			if err != nil {
				t.Fatal(err)
			}
			return ok[0]
		}
		t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		for i := range 3 {
			if !take(t0) {
				t.Fatalf("burst message %d refused", i+1)
			}
		}
		now := t0.Add(-time.Hour) // the clock now reads an hour earlier
		if take(now) {
			t.Fatal("right after the step, a burst just spent: a fourth message conformed")
		}
		if !take(now.Add(time.Second)) {
			t.Fatal("one emission interval after the step: refused; the key is held for the hour the clock went back")
		}
		if take(now.Add(time.Second)) {
			t.Fatal("a second message in the same instant conformed")
		}
	})
}
