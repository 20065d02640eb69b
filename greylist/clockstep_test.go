package greylist_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
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
