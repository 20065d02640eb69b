package greylist_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// hangingStore holds Decide until its context ends (a statement waiting on
// a lock) while stuck is set.
type hangingStore struct {
	greylist.Store
	stuck atomic.Bool
}

func (h *hangingStore) Decide(ctx context.Context, now time.Time, cfg *greylist.Config, k greylist.Key) (greylist.Outcome, error) {
	if h.stuck.Load() {
		<-ctx.Done()
		return greylist.Outcome{}, ctx.Err()
	}
	return h.Store.Decide(ctx, now, cfg, k)
}

// pauseRig: the production step for greylist (OwnTimeouts, as the wiring
// sets for a store check), stage data, on an injected clock.
func pauseRig(t *testing.T, hs *hangingStore) (*policy.Engine, *clocktest.Clock) {
	t.Helper()
	cfg := greylist.DefaultConfig()
	cfg.Stage, cfg.AWLPair, cfg.AWLClientPasses, cfg.Hostname = greylist.StageData, false, 0, "mx1.example.net"
	g, err := greylist.New(cfg, hs, greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(start)
	eng := policy.NewEngine(policy.Options{Logger: slog.New(slog.DiscardHandler), Now: clk.Now},
		[]policy.Step{{Check: g, Timeout: 100 * time.Millisecond, OwnTimeouts: true}})
	return eng, clk
}

func pauseAsk(eng *policy.Engine, msg *policy.Message, state, rcpt string) *policy.Decision {
	req := request("192.0.2.10", "<>", rcpt)
	req.ProtocolState, req.Instance = state, msg.Instance
	return eng.Evaluate(context.Background(), req, msg)
}

// Three timeouts in a row pause greylisting (policy/pause.go), also when
// each timed-out recipient's message then reaches DATA: CheckMessage
// answers from memory, so it neither runs under the pause nor counts as
// the store answering in time.
func TestPauseCountsStoreRunsOnly(t *testing.T) {
	hs := &hangingStore{Store: dbtest.NewFactory(db.SQLite, newStore)(t)()}
	eng, _ := pauseRig(t, hs)
	eng.Evaluate(context.Background(), func() *policy.Request { // Postfix asks at DATA
		r := request("192.0.2.10", "<>", "")
		r.ProtocolState, r.Instance = "DATA", "hook"
		return r
	}(), policy.NewMessage("hook"))
	hs.stuck.Store(true)
	var kinds []string
	for i := range 5 {
		msg := policy.NewMessage(fmt.Sprintf("m.%d", i))
		d := pauseAsk(eng, msg, "RCPT", fmt.Sprintf("r%d@example.net", i))
		if len(d.Errors) != 1 {
			t.Fatalf("RCPT %d: errors %v", i, d.Errors)
		}
		kinds = append(kinds, string(d.Errors[0].Kind))
		pauseAsk(eng, msg, "DATA", "") // the recipient failed open: Postfix sends DATA
	}
	// Three timeouts in a row, then paused (temporary, at once).
	if want := "timeout,timeout,timeout,temporary,temporary"; strings.Join(kinds, ",") != want {
		t.Fatalf("greylist errors of 5 RCPT requests with a hung store: %v, want %s", kinds, want)
	}
}

// A message whose new triplet came after an accepted recipient waits for
// DATA (stage: data), and is deferred there even if greylisting was paused
// meanwhile (the store hanging for other requests): CheckMessage answers
// from the message's state, so a new triplet never passes.
func TestPausedGreylistStillDefersAtData(t *testing.T) {
	hs := &hangingStore{Store: dbtest.NewFactory(db.SQLite, newStore)(t)()}
	eng, clk := pauseRig(t, hs)
	// known1 becomes a known triplet.
	pauseAsk(eng, policy.NewMessage("k.1"), "RCPT", known1)
	clk.Advance(3 * time.Minute)
	if d := pauseAsk(eng, policy.NewMessage("k.2"), "RCPT", known1); d.Action.IsDefer() {
		t.Fatalf("retry of known1: %v", d.Action)
	}
	pauseAsk(eng, policy.NewMessage("hook"), "DATA", "") // Postfix asks at DATA
	clk.Advance(time.Minute)

	msg := policy.NewMessage("m.1")
	if d := pauseAsk(eng, msg, "RCPT", known1); d.Action.IsDefer() {
		t.Fatalf("known recipient: %v", d.Action)
	}
	if d := pauseAsk(eng, msg, "RCPT", newRcpt); d.Action.IsDefer() || !strings.Contains(d.Reason, "deferred at DATA") {
		t.Fatalf("new recipient after an accepted one: %v (%s), want DUNNO, deferred at DATA", d.Action, d.Reason)
	}
	// Meanwhile other connections hit a hung store three times: paused.
	hs.stuck.Store(true)
	for i := range 3 {
		pauseAsk(eng, policy.NewMessage(fmt.Sprintf("o.%d", i)), "RCPT", fmt.Sprintf("o%d@example.net", i))
	}
	d := pauseAsk(eng, msg, "DATA", "")
	if d.Action.Verb != policy.DeferIfPermit {
		t.Fatalf("DATA of a message with a new triplet: %v (reason %q, errors %v); want DEFER_IF_PERMIT", d.Action, d.Reason, d.Errors)
	}
}

// A recipient that fails open because greylisting is paused counts as
// accepted, as one whose store failed does (TestMessageStoreFailureFollowsMessage,
// policy.FailureCheck): when the pause has ended by the next recipient, a
// new triplet waits for DATA instead of splitting the message.
func TestPausedRecipientCountsAsAccepted(t *testing.T) {
	hs := &hangingStore{Store: dbtest.NewFactory(db.SQLite, newStore)(t)()}
	eng, clk := pauseRig(t, hs)
	pauseAsk(eng, policy.NewMessage("hook"), "DATA", "") // Postfix asks at DATA
	hs.stuck.Store(true)
	for i := range 3 { // other connections: the store hangs, greylisting pauses
		pauseAsk(eng, policy.NewMessage(fmt.Sprintf("o.%d", i)), "RCPT", fmt.Sprintf("o%d@example.net", i))
	}
	msg := policy.NewMessage("m.1")
	d1 := pauseAsk(eng, msg, "RCPT", "first@example.net")
	if !d1.Action.IsDunno() || len(d1.Errors) != 1 || d1.Errors[0].Kind != policy.ErrorTemporary {
		t.Fatalf("first recipient: %v, errors %v; want DUNNO (fail open) while paused", d1.Action, d1.Errors)
	}
	hs.stuck.Store(false) // the store is back; the pause runs out
	clk.Advance(time.Second)
	d2 := pauseAsk(eng, msg, "RCPT", newRcpt)
	d3 := pauseAsk(eng, msg, "DATA", "")
	if !d2.Action.IsDunno() || d3.Action.Verb != policy.DeferIfPermit {
		t.Fatalf("new recipient after a failed-open one: RCPT %v, DATA %v; want DUNNO, then the message deferred at DATA (no split)", d2.Action, d3.Action)
	}
}
