package greylist_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// The tests here check one verdict per message (greylist.go, msgVerdict)
// through the engine, as Postfix drives it: one RCPT request per
// recipient, then DATA, all with one instance, on an injected clock and
// on both stores.

// messageRig is an engine with the greylist check (and, in front of it, a
// stand-in whitelist exempting postmaster@) on a clock the test moves.
type messageRig struct {
	t   *testing.T
	g   *greylist.Checker
	eng *policy.Engine
	clk *clocktest.Clock
	n   int // messages sent, for distinct instances
}

func newMessageRig(t *testing.T, store greylist.Store, stage string) *messageRig {
	t.Helper()
	cfg := greylist.DefaultConfig()
	cfg.Stage, cfg.AWLPair, cfg.AWLClientPasses, cfg.Hostname = stage, false, 0, "mx1.example.net"
	g, err := greylist.New(cfg, store, greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &messageRig{t: t, g: g, clk: clocktest.New(start)}
	r.eng = policy.NewEngine(policy.Options{Logger: slog.New(slog.DiscardHandler), Now: r.clk.Now},
		[]policy.Step{{Check: roleWhitelist{}, Timeout: time.Second}, {Check: g, Timeout: 2 * time.Second}})
	return r
}

// send runs one message's RCPT requests and, when some recipient was
// accepted at RCPT (else Postfix would not send DATA), its DATA request;
// it returns the RCPT actions and the DATA action (zero when not sent).
func (r *messageRig) send(rcpts []string) (atRCPT []policy.Action, atData policy.Action) {
	r.t.Helper()
	msg := r.message()
	for _, rcpt := range rcpts {
		atRCPT = append(atRCPT, r.ask(msg, "RCPT", rcpt))
	}
	for _, a := range atRCPT {
		if !a.IsDefer() {
			return atRCPT, r.ask(msg, "DATA", "")
		}
	}
	return atRCPT, policy.Action{}
}

// rcptOnly runs one message's RCPT requests only, as a Postfix without
// check_policy_service in smtpd_data_restrictions does.
func (r *messageRig) rcptOnly(rcpts ...string) (atRCPT []policy.Action) {
	r.t.Helper()
	msg := r.message()
	for _, rcpt := range rcpts {
		atRCPT = append(atRCPT, r.ask(msg, "RCPT", rcpt))
	}
	return atRCPT
}

func (r *messageRig) message() *policy.Message {
	r.n++
	return policy.NewMessage(fmt.Sprintf("a1b2.c3d4.%d", r.n))
}

func (r *messageRig) ask(msg *policy.Message, state, rcpt string) policy.Action {
	req := request("192.0.2.10", "<>", rcpt)
	req.ProtocolState, req.Instance = state, msg.Instance
	return r.eng.Evaluate(context.Background(), req, msg).Action
}

// known makes each recipient's triplet known, RCPT only: first contact,
// then a retry after the delay; the clock ends 10 minutes on.
func (r *messageRig) known(rcpts ...string) {
	r.t.Helper()
	for _, rcpt := range rcpts {
		r.rcptOnly(rcpt)
	}
	r.clk.Advance(3 * time.Minute)
	for _, rcpt := range rcpts {
		if a := r.rcptOnly(rcpt); a[0].IsDefer() {
			r.t.Fatalf("retry of %s after the delay: %v", rcpt, a[0])
		}
	}
	r.clk.Advance(7 * time.Minute)
}

// dataHook sends a DATA request, as a Postfix with the hook does for
// every message it accepts a recipient of.
func (r *messageRig) dataHook() { r.ask(r.message(), "DATA", "") }

// roleWhitelist stands in for the whitelist check: postmaster@ skips
// greylisting, as a role recipient does.
type roleWhitelist struct{}

func (roleWhitelist) Name() string { return "whitelist" }

func (roleWhitelist) Check(_ context.Context, st *policy.State) (policy.Result, error) {
	if strings.HasPrefix(st.Req.Recipient, "postmaster@") {
		st.Facts.Skip = st.Facts.Skip.With(greylist.Name)
		return policy.Pass("role recipient"), nil
	}
	return policy.Pass(""), nil
}

func verbs(as []policy.Action) string {
	var b []string
	for _, a := range as {
		b = append(b, string(a.Verb))
	}
	return strings.Join(b, ",")
}

const (
	newRcpt = "new@example.net"
	known1  = "k1@example.net"
	known2  = "k2@example.net"
)

func eachStore(t *testing.T, f func(t *testing.T, open func() greylist.Store)) {
	for _, kind := range []string{db.SQLite, db.Postgres} {
		t.Run(kind, func(t *testing.T) { f(t, dbtest.NewFactory(kind, newStore)(t)) })
	}
}

// A new recipient first: every recipient is deferred at RCPT, the known
// ones with it, whatever the stage; the retry passes whole, with one
// X-Greylist header.
func TestMessageNewFirstDefersWhole(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() greylist.Store) {
		for _, stage := range []string{greylist.StageRCPT, greylist.StageData} {
			r := newMessageRig(t, open(), stage)
			r.known(known1 + "." + stage)
			k1 := known1 + "." + stage
			n := newRcpt + "." + stage
			atRCPT, atData := r.send([]string{n, k1})
			if verbs(atRCPT) != "DEFER_IF_PERMIT,DEFER_IF_PERMIT" || atData != (policy.Action{}) {
				t.Fatalf("%s: new then known: RCPT %v, DATA %v; want both deferred at RCPT", stage, atRCPT, atData)
			}
			if !strings.Contains(atRCPT[1].Text, "try again in 120 seconds") {
				t.Errorf("%s: the known recipient's deferral says %q, want the message's 120 s", stage, atRCPT[1].Text)
			}
			r.clk.Advance(2*time.Minute + time.Second)
			atRCPT, atData = r.send([]string{n, k1})
			if verbs(atRCPT) != "PREPEND,DUNNO" || atData.Verb != policy.Dunno {
				t.Fatalf("%s: retry: RCPT %v, DATA %v; want the X-Greylist PREPEND, then DUNNO", stage, atRCPT, atData)
			}
		}
	})
}

// Known recipients first: with stage data every recipient is accepted at
// RCPT and the message is deferred once, at DATA; the retry passes whole.
// With stage rcpt, or before Postfix has ever asked at DATA, the new
// recipient is deferred alone: a split, never a pass.
func TestMessageKnownFirstDefersAtData(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() greylist.Store) {
		r := newMessageRig(t, open(), greylist.StageData)
		r.known(known1, known2)
		atRCPT := r.rcptOnly(known1, known2, newRcpt)
		if verbs(atRCPT) != "DUNNO,DUNNO,DEFER_IF_PERMIT" {
			t.Fatalf("before any DATA request: RCPT %v, want the new recipient deferred at RCPT", atRCPT)
		}
		r.dataHook()
		r.clk.Advance(10 * time.Minute)
		n2 := "new2@example.net"
		atRCPT, atData := r.send([]string{known1, known2, n2})
		if verbs(atRCPT) != "DUNNO,DUNNO,DUNNO" || atData.Verb != policy.DeferIfPermit ||
			!strings.Contains(atData.Text, "try again in 120 seconds") {
			t.Fatalf("stage data: RCPT %v, DATA %v; want all accepted at RCPT and the message deferred at DATA", atRCPT, atData)
		}
		r.clk.Advance(30 * time.Second)
		if _, atData = r.send([]string{known1, n2, known2}); !strings.Contains(atData.Text, "try again in 90 seconds") {
			t.Fatalf("early retry: DATA %v, want deferred with 90 s left", atData)
		}
		r.clk.Advance(2 * time.Minute)
		atRCPT, atData = r.send([]string{known1, known2, n2})
		if verbs(atRCPT) != "DUNNO,DUNNO,PREPEND" || atData.Verb != policy.Dunno {
			t.Fatalf("retry after the delay: RCPT %v, DATA %v; want all accepted, X-Greylist once", atRCPT, atData)
		}

		rr := newMessageRig(t, open(), greylist.StageRCPT)
		rr.known(known1)
		rr.dataHook()
		atRCPT, atData = rr.send([]string{known1, "new3@example.net", known2})
		if verbs(atRCPT) != "DUNNO,DEFER_IF_PERMIT,DEFER_IF_PERMIT" || atData.Verb != policy.Dunno {
			t.Fatalf("stage rcpt: RCPT %v, DATA %v; want the new recipient and those after it deferred at RCPT", atRCPT, atData)
		}
	})
}

// A role recipient stays exempt: it is accepted at RCPT whatever the
// message's verdict, and it does not count as an accepted recipient, so
// a new recipient after it is still deferred at RCPT.
func TestMessageExemptRecipientStaysExempt(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() greylist.Store) {
		r := newMessageRig(t, open(), greylist.StageData)
		r.known(known1)
		r.dataHook()
		for _, order := range [][]string{
			{newRcpt, "postmaster@example.net", known1},
			{"postmaster@example.net", "new2@example.net", known1},
		} {
			atRCPT, atData := r.send(order)
			for i, a := range atRCPT {
				if want := strings.HasPrefix(order[i], "postmaster@"); a.IsDefer() == want {
					t.Errorf("%v: %s got %v", order, order[i], a)
				}
			}
			if atData.Verb != policy.Dunno {
				t.Errorf("%v: DATA %v, want DUNNO: only the exempt recipient is left", order, atData)
			}
		}
	})
}

// A recipient whose triplet cannot be recorded follows its message's
// deferral; before any deferral it fails open, and counts as accepted, so
// a new recipient after it waits for DATA instead of splitting.
func TestMessageStoreFailureFollowsMessage(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() greylist.Store) {
		r := newMessageRig(t, failingStore{open(), "down@example.net"}, greylist.StageData)
		r.dataHook()
		atRCPT := r.rcptOnly(newRcpt, "down@example.net")
		if verbs(atRCPT) != "DEFER_IF_PERMIT,DEFER_IF_PERMIT" {
			t.Fatalf("store failure after a deferral: RCPT %v, want both deferred", atRCPT)
		}
		atRCPT, atData := r.send([]string{"down@example.net", "new2@example.net"})
		if verbs(atRCPT) != "DUNNO,DUNNO" || atData.Verb != policy.DeferIfPermit {
			t.Fatalf("store failure first: RCPT %v, DATA %v; want DUNNO (fail open), then the message deferred at DATA", atRCPT, atData)
		}
	})
}

// failingStore fails every decision about one recipient.
type failingStore struct {
	greylist.Store
	rcpt string
}

func (f failingStore) Decide(ctx context.Context, now time.Time, cfg *greylist.Config, k greylist.Key) (greylist.Outcome, error) {
	if k.Recipient == f.rcpt {
		return greylist.Outcome{}, errors.New("greylist: store: connection refused")
	}
	return f.Store.Decide(ctx, now, cfg, k)
}

func TestStageValidated(t *testing.T) {
	cfg := greylist.DefaultConfig()
	cfg.Stage = "end-of-data"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "greylist.stage") {
		t.Fatalf("stage %q: %v, want an error naming greylist.stage", cfg.Stage, err)
	}
}
