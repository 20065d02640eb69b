package policy

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
)

// A check with OwnTimeouts that times out pauseAfter times in a row is not
// run for pauseFor: its on_error is answered at once, with a temporary
// error. Then one request tries it again, and an answer in time ends the
// pause. A check without OwnTimeouts runs however often it times out.
func TestEnginePausesOwnTimeouts(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	var stuck atomic.Bool
	stuck.Store(true)
	var runs atomic.Int32
	store := funcCheck{"store", func(ctx context.Context, _ *State) (Result, error) {
		runs.Add(1)
		if stuck.Load() {
			<-ctx.Done() // a statement waiting on a lock until the deadline
			return Result{}, ctx.Err()
		}
		return Result{Action: deferGrey, Reason: "new triplet"}, nil
	}}
	var logs bytes.Buffer
	e := NewEngine(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: clock.Now},
		[]Step{{Check: store, Timeout: 30 * time.Millisecond, OwnTimeouts: true}})
	ask := func() *Decision { return e.Evaluate(context.Background(), rcpt(), nil) }

	for i := range pauseAfter {
		d := ask()
		if !d.Action.IsDunno() || len(d.Errors) != 1 || d.Errors[0].Kind != ErrorTimeout {
			t.Fatalf("timeout %d: %v, errors %v; want DUNNO after a timeout", i+1, d.Action, d.Errors)
		}
	}
	e.SetSteps([]Step{{Check: store, Timeout: 30 * time.Millisecond, OwnTimeouts: true}}) // a reload keeps the pause
	before := runs.Load()
	for range 5 {
		d := ask()
		if !d.Action.IsDunno() || len(d.Errors) != 1 || d.Errors[0].Kind != ErrorTemporary ||
			!strings.Contains(d.Errors[0].Err.Error(), "paused") {
			t.Fatalf("paused: %v, errors %v; want DUNNO with a temporary \"paused\" error", d.Action, d.Errors)
		}
	}
	if n := runs.Load() - before; n != 0 {
		t.Fatalf("the paused check ran %d times", n)
	}
	if strings.Count(logs.String(), "check paused") != 1 {
		t.Errorf("want one warning that the check paused:\n%s", logs.String())
	}

	// Still stuck when the pause runs out: one request tries, the pause goes on.
	clock.Advance(pauseFor)
	if d := ask(); d.Errors[0].Kind != ErrorTimeout || runs.Load()-before != 1 {
		t.Fatalf("the try after the pause: errors %v, %d runs; want one run, timed out", d.Errors, runs.Load()-before)
	}
	if d := ask(); d.Errors[0].Kind != ErrorTemporary {
		t.Fatalf("after a failed try: errors %v; want paused again", d.Errors)
	}

	// The store answers again: the next try ends the pause.
	stuck.Store(false)
	clock.Advance(pauseFor)
	for i := range 3 {
		if d := ask(); d.Action != deferGrey || len(d.Errors) != 0 {
			t.Fatalf("request %d after the store came back: %v, errors %v; want its answer", i+1, d.Action, d.Errors)
		}
	}
	if !strings.Contains(logs.String(), "check resumed") {
		t.Errorf("no line saying the check resumed:\n%s", logs.String())
	}

	// Without OwnTimeouts (SPF: a sender's slow DNS is not ours) every
	// request runs the check.
	stuck.Store(true)
	e = NewEngine(Options{Logger: quiet(), Now: clock.Now}, []Step{{Check: store, Timeout: 30 * time.Millisecond}})
	before = runs.Load()
	for range pauseAfter + 2 {
		ask()
	}
	if n := runs.Load() - before; n != pauseAfter+2 {
		t.Errorf("a check without OwnTimeouts ran %d times of %d", n, pauseAfter+2)
	}
}

// The host's clock steps back (an NTP correction, a VM resumed) while a
// check is paused. A pause lasts pauseFor, "for a second its on_error is
// answered at once, then one request tries it again" (ARCHITECTURE.md,
// "Pauses"): a backward step must not stretch it to the size of the step,
// with the store checks (greylisting) answering on_error all that time.
func TestPauseSurvivesBackwardClockStep(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	var stuck atomic.Bool
	stuck.Store(true)
	var runs atomic.Int32
	store := funcCheck{"store", func(ctx context.Context, _ *State) (Result, error) {
		runs.Add(1)
		if stuck.Load() {
			<-ctx.Done()
			return Result{}, ctx.Err()
		}
		return Result{Action: deferGrey, Reason: "new triplet"}, nil
	}}
	e := NewEngine(Options{Logger: quiet(), Now: clock.Now},
		[]Step{{Check: store, Timeout: 30 * time.Millisecond, OwnTimeouts: true}})
	ask := func() *Decision { return e.Evaluate(context.Background(), rcpt(), nil) }
	for range pauseAfter {
		ask()
	}
	if d := ask(); len(d.Errors) != 1 || d.Errors[0].Kind != ErrorTemporary {
		t.Fatalf("after %d timeouts: errors %v; want the check paused", pauseAfter, d.Errors)
	}
	stuck.Store(false) // the store is back

	clock.Advance(-time.Hour) // the clock steps back an hour
	clock.Advance(pauseFor)   // and a pause's length passes
	before := runs.Load()
	d := ask()
	if runs.Load() == before || d.Action != deferGrey {
		t.Fatalf("%s after the pause began (clock stepped back 1h): %v, errors %v, check not tried; "+
			"want the check tried again after pauseFor", pauseFor, d.Action, d.Errors)
	}
}
