package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/internal/panics"
)

// funcCheck adapts a function to Check; a seam the engine owns.
type funcCheck struct {
	name string
	fn   func(ctx context.Context, st *State) (Result, error)
}

func (f funcCheck) Name() string                                         { return f.name }
func (f funcCheck) Check(ctx context.Context, st *State) (Result, error) { return f.fn(ctx, st) }

func fixed(name string, a Action, reason string) Step {
	return Step{Check: funcCheck{name, func(context.Context, *State) (Result, error) {
		return Result{Action: a, Reason: reason}, nil
	}}}
}

func rcpt() *Request {
	return &Request{Request: "smtpd_access_policy", ProtocolState: "RCPT", Recipient: "r@x", Instance: "i1"}
}

var deferGrey = Action{Verb: DeferIfPermit, Text: "4.2.0 Greylisted"}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)) }

func TestEngineFirstDecisiveWins(t *testing.T) {
	reject := Action{Verb: Code, Code: "554", Text: "5.7.1 listed"}
	e := NewEngine(Options{Logger: quiet()}, []Step{
		fixed("a", DunnoAction, "clean"),
		fixed("b", reject, "listed x"),
		fixed("c", deferGrey, "never reached"),
	})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if d.Action != reject || d.Check != "b" || d.Reason != "listed x" {
		t.Fatalf("got %+v", d)
	}
}

func TestEngineSkipsNonRCPTAndSASL(t *testing.T) {
	e := NewEngine(Options{Logger: quiet(), SkipSASL: true}, []Step{fixed("g", deferGrey, "")})
	r := rcpt()
	r.ProtocolState = "DATA"
	if a := e.Decide(context.Background(), r, nil); !a.IsDunno() {
		t.Errorf("DATA stage answered %v", a)
	}
	r = rcpt()
	r.SASLUsername = "alice"
	if a := e.Decide(context.Background(), r, nil); !a.IsDunno() {
		t.Errorf("SASL client answered %v", a)
	}
	e = NewEngine(Options{Logger: quiet(), SkipSASL: false}, []Step{fixed("g", deferGrey, "")})
	if a := e.Decide(context.Background(), r, nil); a != deferGrey {
		t.Errorf("with skip_sasl off, SASL client answered %v", a)
	}
}

func TestEngineFailOpenAndOnError(t *testing.T) {
	failing := funcCheck{"db", func(context.Context, *State) (Result, error) {
		return Result{}, errors.New("connection refused")
	}}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: failing}, fixed("after", deferGrey, "new")})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if d.Action != deferGrey || len(d.Errors) != 1 || d.Errors[0].Check != "db" {
		t.Fatalf("fail-open did not continue to the next check: %+v", d)
	}
	e = NewEngine(Options{Logger: quiet()}, []Step{{Check: failing, OnError: deferGrey}})
	if d := e.Evaluate(context.Background(), rcpt(), nil); d.Action != deferGrey || d.Reason != "db failed" {
		t.Fatalf("on_error defer not applied: %+v", d)
	}
}

func TestEngineCheckIgnoringDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stuck := funcCheck{"stuck", func(context.Context, *State) (Result, error) {
		<-release // ignores ctx on purpose
		return Result{Action: deferGrey}, nil
	}}
	e := NewEngine(Options{Logger: quiet(), Budget: 50 * time.Millisecond}, []Step{{Check: stuck}})
	start := time.Now()
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if !d.Action.IsDunno() || len(d.Errors) != 1 || d.Errors[0].Kind != ErrorTimeout {
		t.Fatalf("got %+v", d)
	}
	// Generous bound: the point is "not forever", not a timing assertion.
	if time.Since(start) > 5*time.Second {
		t.Fatal("engine waited for a check past the budget")
	}
}

func TestEngineStepTimeout(t *testing.T) {
	slow := funcCheck{"slow", func(ctx context.Context, _ *State) (Result, error) {
		<-ctx.Done()
		return Result{}, ctx.Err()
	}}
	e := NewEngine(Options{Logger: quiet(), Budget: time.Minute},
		[]Step{{Check: slow, Timeout: 10 * time.Millisecond}, fixed("next", deferGrey, "")})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if d.Action != deferGrey || d.Errors[0].Kind != ErrorTimeout {
		t.Fatalf("step timeout did not fail open to the next check: %+v", d)
	}
}

// A check that panics fails, per its on_error; its stack is logged, once
// per panicStackEvery however many requests meet it.
func TestEnginePanicIsAnError(t *testing.T) {
	boom := funcCheck{"boom", func(context.Context, *State) (Result, error) { panic("bug") }}
	logs := &logtest.Buffer{}
	e := NewEngine(Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}, []Step{{Check: boom}})
	for range 3 {
		d := e.Evaluate(context.Background(), rcpt(), nil)
		if !d.Action.IsDunno() || len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Err.Error(), "check boom panicked: bug") {
			t.Fatalf("got %+v", d)
		}
	}
	if n := strings.Count(logs.String(), "check panicked"); n != 1 || !strings.Contains(logs.String(), "TestEnginePanicIsAnError") {
		t.Errorf("logged the panic %d times, want once with its stack:\n%s", n, logs)
	}
}

// A panic recovered below a check (a store's batch, a DNS lookup) and
// returned as its error is logged with its stack too.
func TestEngineLogsAPanicReturnedAsError(t *testing.T) {
	below := funcCheck{"below", func(context.Context, *State) (Result, error) {
		err := panics.Call(func() error { panic("driver bug") })
		return Result{}, fmt.Errorf("store: %w", err)
	}}
	logs := &logtest.Buffer{}
	e := NewEngine(Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}, []Step{{Check: below}})
	if d := e.Evaluate(context.Background(), rcpt(), nil); !d.Action.IsDunno() || len(d.Errors) != 1 {
		t.Fatalf("got %+v", d)
	}
	if !strings.Contains(logs.String(), "check panicked") || !strings.Contains(logs.String(), "TestEngineLogsAPanicReturnedAsError") {
		t.Errorf("the panic's stack is not logged:\n%s", logs)
	}
}

func TestEngineFactsAndSkip(t *testing.T) {
	wl := funcCheck{"whitelist", func(_ context.Context, st *State) (Result, error) {
		st.Facts.Skip = st.Facts.Skip.With("greylist")
		st.Facts.Whitelist = "sender example.org"
		return Pass("whitelisted sender"), nil
	}}
	var sawFacts Facts
	spy := funcCheck{"spy", func(_ context.Context, st *State) (Result, error) {
		sawFacts = st.Facts
		return Pass(""), nil
	}}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: wl}, {Check: spy}, fixed("greylist", deferGrey, "")})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if !d.Action.IsDunno() || d.Reason != "whitelisted sender" {
		t.Fatalf("skipped check still decided: %+v", d)
	}
	if sawFacts.Whitelist != "sender example.org" || d.Facts.Whitelist == "" {
		t.Error("facts not passed to later checks or the decision")
	}
	all := funcCheck{"whitelist", func(_ context.Context, st *State) (Result, error) {
		st.Facts.Skip = st.Facts.Skip.With(AllChecks)
		return Pass("whitelisted client"), nil
	}}
	e = NewEngine(Options{Logger: quiet()}, []Step{{Check: all}, fixed("x", deferGrey, "")})
	if d := e.Evaluate(context.Background(), rcpt(), nil); !d.Action.IsDunno() || d.Check != "whitelist" {
		t.Fatalf("skip all did not stop: %+v", d)
	}
}

// twoHeaderEngine returns an engine whose one check adds two headers to
// every request's message, and a message to decide.
func twoHeaderEngine() (*Engine, *Message) {
	hdr := funcCheck{"spf", func(_ context.Context, st *State) (Result, error) {
		st.Msg.AddHeader("Received-SPF: pass")
		st.Msg.AddHeader("X-Greylist: delayed 60 seconds")
		return Pass(""), nil
	}}
	return NewEngine(Options{Logger: quiet()}, []Step{{Check: hdr}}), NewMessage("i1")
}

func TestEngineHeadersOncePerMessage(t *testing.T) {
	e, msg := twoHeaderEngine()
	var got []string
	for i := 0; i < 3; i++ {
		got = append(got, e.Decide(context.Background(), rcpt(), msg).String())
	}
	want := []string{"PREPEND Received-SPF: pass", "PREPEND X-Greylist: delayed 60 seconds", "DUNNO"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestEngineObserveMode(t *testing.T) {
	var rec recorded
	e := NewEngine(Options{Logger: quiet(), Observe: true, Record: []Recorder{&rec}}, []Step{fixed("g", deferGrey, "new")})
	if a := e.Decide(context.Background(), rcpt(), nil); !a.IsDunno() {
		t.Fatalf("observe mode enforced %v", a)
	}
	if len(rec) != 1 || rec[0].Would != deferGrey || !rec[0].Observe {
		t.Fatalf("observe decision not recorded with its would-be action: %+v", rec)
	}
}

type recorded []*Decision

func (r *recorded) Record(d *Decision) { *r = append(*r, d) }

func TestEngineLogsOneLine(t *testing.T) {
	var buf bytes.Buffer
	e := NewEngine(Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}, []Step{fixed("greylist", deferGrey, "new triplet")})
	r := rcpt()
	r.Sender = "a@b"
	e.Decide(context.Background(), r, nil)
	line := buf.String()
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("want one log line, got %q", line)
	}
	for _, k := range []string{`"check":"greylist"`, `"action":"DEFER_IF_PERMIT 4.2.0 Greylisted"`, `"reason":"new triplet"`, `"sender":"a@b"`, `"rcpt":"r@x"`, `"dur"`} {
		if !strings.Contains(line, k) {
			t.Errorf("log line lacks %s: %s", k, line)
		}
	}
}

func TestEngineKeepsDelayOfAPass(t *testing.T) {
	passed := funcCheck{"greylist", func(context.Context, *State) (Result, error) {
		return Result{Action: DunnoAction, Reason: "retried after delay", Delay: 90 * time.Second}, nil
	}}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: passed}})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if d.Delay != 90*time.Second || d.Reason != "retried after delay" {
		t.Fatalf("delay of a pass lost: %+v", d)
	}
}

func TestEngineTuningReload(t *testing.T) {
	e := NewEngine(Options{Logger: quiet(), Observe: true}, []Step{fixed("g", deferGrey, "new")})
	if a := e.Decide(context.Background(), rcpt(), nil); !a.IsDunno() {
		t.Fatalf("observe mode enforced %v", a)
	}
	e.SetTuning(Tuning{Observe: false})
	if a := e.Decide(context.Background(), rcpt(), nil); a != deferGrey {
		t.Fatalf("after switching observe off, got %v", a)
	}
}

func TestEngineHeadersAtDataNotEndOfMessage(t *testing.T) {
	e, msg := twoHeaderEngine()
	if a := e.Decide(context.Background(), rcpt(), msg); a.String() != "PREPEND Received-SPF: pass" {
		t.Fatalf("RCPT: %v", a)
	}
	eom := rcpt()
	eom.ProtocolState = "END-OF-MESSAGE"
	if a := e.Decide(context.Background(), eom, msg); !a.IsDunno() {
		t.Fatalf("END-OF-MESSAGE must not PREPEND: %v", a)
	}
	data := rcpt()
	data.ProtocolState = "DATA"
	if a := e.Decide(context.Background(), data, msg); a.String() != "PREPEND X-Greylist: delayed 60 seconds" {
		t.Fatalf("DATA did not carry the second header: %v", a)
	}
}

func TestEnginePassNamesEveryReason(t *testing.T) {
	e := NewEngine(Options{Logger: quiet()}, []Step{
		fixed("spf", DunnoAction, "spf pass mailfrom=pool.test"),
		{Check: funcCheck{"greylist", func(context.Context, *State) (Result, error) {
			return Result{Action: DunnoAction, Reason: "passed after delay", Delay: time.Minute}, nil
		}}},
	})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if d.Check != "greylist" || d.Reason != "spf pass mailfrom=pool.test; passed after delay" || d.Delay != time.Minute {
		t.Fatalf("got check %q reason %q delay %v", d.Check, d.Reason, d.Delay)
	}
}

// ClockOffset shifts the time the checks see, and only that: the
// decision's time and duration stay on the engine's clock.
func TestEngineClockOffsetShiftsChecksOnly(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var seen time.Time
	see := funcCheck{"see", func(_ context.Context, st *State) (Result, error) {
		seen = st.Now
		return Pass("seen"), nil
	}}
	e := NewEngine(Options{Logger: quiet(), Now: func() time.Time { return at },
		ClockOffset: func() time.Duration { return -90 * time.Second }}, []Step{{Check: see, Timeout: time.Second}})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if want := at.Add(-90 * time.Second); !seen.Equal(want) {
		t.Errorf("the check saw %v, want %v (the engine's clock shifted by the offset)", seen, want)
	}
	if !d.Time.Equal(at) || d.Duration != 0 {
		t.Errorf("decision time %v, duration %v; want %v and 0 (the engine's own clock)", d.Time, d.Duration, at)
	}
}
