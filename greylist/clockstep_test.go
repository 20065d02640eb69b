package greylist_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// greylist.stage: data holds a deferral for DATA only while Postfix has
// asked at DATA "within the last hour, so a Postfix without that line
// never lets a new triplet through (one whose line was just removed, for
// at most that hour)" (README, "Greylisting"). Here the line is removed
// right after the last DATA request, and the clock is stepped back two
// hours: 90 minutes of real time later the new recipient after a known
// one is still answered DUNNO at RCPT, waiting for a DATA request that
// never comes, so the new triplet is delivered without greylisting.
func TestDataTrustAfterBackwardClockStep(t *testing.T) {
	// Control: without the step, 90 minutes after the last DATA request
	// the new recipient is deferred at RCPT.
	c := newMessageRig(t, greylist.NewStore(dbtest.Open(t, db.SQLite)), greylist.StageData)
	c.known(known1)
	c.dataHook()
	c.clk.Advance(90 * time.Minute)
	if got := verbs(c.rcptOnly(known1, newRcpt)); got != "DUNNO,DEFER_IF_PERMIT" {
		t.Fatalf("control, no clock step: RCPT %v", got)
	}

	r := newMessageRig(t, greylist.NewStore(dbtest.Open(t, db.SQLite)), greylist.StageData)
	r.known(known1)
	r.dataHook()                  // the last DATA request: then the hook is removed
	r.clk.Advance(-2 * time.Hour) // the clock is stepped back
	r.clk.Advance(90 * time.Minute)
	atRCPT := r.rcptOnly(known1, newRcpt)
	if verbs(atRCPT) != "DUNNO,DEFER_IF_PERMIT" {
		t.Fatalf("90 min (real time) after the last DATA request, clock stepped back 2h: RCPT %v; "+
			"want the new recipient deferred at RCPT (no DATA request within the last hour)", verbs(atRCPT))
	}
}

// `greylist release` stamps passed_at with the admin command's clock
// (this host's, README "Clocks"), while first_seen came from the daemon's
// clock. When the first is behind the second (the clock stepped back
// since the first attempt, or, on PostgreSQL, an admin host behind the
// server whose time the daemons store) passed_at falls before first_seen,
// and the released triplet's pass carries a negative delay: the
// X-Greylist header says "delayed -600 seconds" (README: "adds
// X-Greylist: delayed N seconds" on the first pass after a delay).
func TestReleaseAfterBackwardStepGivesNegativeDelay(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	r := newMessageRig(t, greylist.NewStore(d), greylist.StageRCPT)
	if a := r.rcptOnly(newRcpt); !a[0].IsDefer() {
		t.Fatalf("first attempt: %v", a[0])
	}
	r.clk.Advance(-10 * time.Minute) // the clock is stepped back
	adm := greylist.NewAdmin(d, r.g.Config())
	if n, err := adm.Release(dbtest.Context(t), greylist.Selector{Client: "192.0.2.10"}, r.clk.Now()); err != nil || n != 1 {
		t.Fatalf("release: %d, %v", n, err)
	}
	r.clk.Advance(time.Minute)
	a := r.rcptOnly(newRcpt)[0]
	if a.IsDefer() || strings.Contains(a.Text, "delayed -") {
		t.Fatalf("retry after the release: %v; want a pass with a delay of 0 or more", a)
	}
}

// The host's clock ran a week fast (a VM restored, a board without a
// battery-backed clock that started before NTP) and is stepped back to the
// true time. A triplet first seen while it was fast has its first_seen a
// week "in the future". README, "Greylisting": "a retry after the delay
// and within greylist.retry_window (48 h) passes". Here the sender retries
// as a real MTA does, for Postfix's whole maximal_queue_lifetime (5 days),
// every retry long after the delay in real time, and each one is deferred
// ("try again in ~600000 seconds"): the message bounces.
func TestTripletFirstSeenBeforeClockStepBack(t *testing.T) {
	g, _ := newCheck(t, greylist.DefaultConfig())
	req := request("192.0.2.10", "alice@example.org", "bob@example.net")
	const fast = 7 * 24 * time.Hour
	if res := run(t, g, fast, req, nil, policy.Facts{}); res.Action.Verb != policy.DeferIfPermit {
		t.Fatalf("first attempt, clock a week fast: %v, want a deferral", res.Action)
	}
	// The clock is stepped back a week; the sender retries on Postfix's
	// schedule, for 5 days.
	var got []string
	for _, at := range []time.Duration{5 * time.Minute, 20 * time.Minute, time.Hour, 4 * time.Hour,
		24 * time.Hour, 3 * 24 * time.Hour, 5 * 24 * time.Hour} {
		res := run(t, g, at, req, nil, policy.Facts{})
		if res.Action.Verb != policy.DeferIfPermit {
			return // passed: the step back cost at most a round
		}
		got = append(got, fmt.Sprintf("+%s: %s (%s)", at, res.Action.Text, res.Reason))
	}
	t.Errorf("after the clock was stepped back a week, every retry for 5 days was deferred:\n%v", got)
}

// The same step on every store, the batched ones included: a pending
// triplet first seen more than a minute after now starts over (one more
// delay), and one first seen within the minute is an early retry as
// before, so daemons whose clocks differ by milliseconds still see one
// "new" per triplet.
func TestStoresRestartATripletFromTheFuture(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		cfg := greylist.DefaultConfig()
		batched, stop := greylist.NewBatchStore(d, greylist.BatchOptions{})
		defer stop()
		for name, s := range map[string]greylist.Store{"store": greylist.NewStore(d), "batched": batched} {
			t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
			sender := "a@" + name + ".example.org" // a domain of its own: no pair auto-whitelist
			if v := decideAt(t, s, cfg, t0.Add(7*24*time.Hour), "192.0.2.10", sender, "bob@example.net"); v != greylist.VerdictNew {
				t.Fatalf("%s: first attempt: %v", name, v)
			}
			if v := decideAt(t, s, cfg, t0.Add(5*time.Minute), "192.0.2.10", sender, "bob@example.net"); v != greylist.VerdictNew {
				t.Errorf("%s: retry after the clock stepped back a week: %v, want new (the triplet starts over)", name, v)
			}
			if v := decideAt(t, s, cfg, t0.Add(5*time.Minute+cfg.Delay), "192.0.2.10", sender, "bob@example.net"); v != greylist.VerdictPassed {
				t.Errorf("%s: retry a delay later: %v, want passed", name, v)
			}
			other := "a@other-" + name + ".example.org"
			decideAt(t, s, cfg, t0.Add(30*time.Second), "192.0.2.10", other, "bob@example.net")
			if v := decideAt(t, s, cfg, t0, "192.0.2.10", other, "bob@example.net"); v != greylist.VerdictEarly {
				t.Errorf("%s: a retry 30 s before the first attempt's time: %v, want early (within the slack)", name, v)
			}
		}
	})
}
