package policy

import (
	"context"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
)

// taking is a check that "takes" d on the engine's injected clock and then
// passes, so the tests assert how the budget is split without depending on
// the machine's speed.
func taking(clk *clocktest.Clock, name string, timeout, d time.Duration) Step {
	return Step{Timeout: timeout, Check: funcCheck{name, func(context.Context, *State) (Result, error) {
		clk.Advance(d)
		return Pass(""), nil
	}}}
}

func shares(d *Decision) map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, t := range d.Timings {
		m[t.Check] = t.Share
	}
	return m
}

// The defaults fit request_timeout, so every check gets its whole
// timeout even when each one before it used all of its own.
func TestEngineEveryStepGetsItsShare(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	grey := Step{Timeout: 1500 * time.Millisecond, Check: funcCheck{"greylist", func(ctx context.Context, _ *State) (Result, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("greylist ran without a deadline")
		}
		return Result{Action: deferGrey, Reason: "new triplet"}, nil
	}}}
	e := NewEngine(Options{Logger: quiet(), Now: clk.Now, Budget: 6 * time.Second}, []Step{
		taking(clk, "whitelist", 500*time.Millisecond, 500*time.Millisecond),
		taking(clk, "dnsbl", 1500*time.Millisecond, 1500*time.Millisecond),
		// A run charged past its share (the engine stopped waiting at the
		// share) costs the later steps only the share.
		taking(clk, "spf", 2500*time.Millisecond, 4*time.Second),
		grey,
	})
	for range 3 {
		d := e.Evaluate(context.Background(), rcpt(), nil)
		if d.Action != deferGrey || d.Check != "greylist" || len(d.Errors) != 0 {
			t.Fatalf("greylist must decide after slow earlier checks: %+v", d)
		}
		want := map[string]time.Duration{"whitelist": 500 * time.Millisecond, "dnsbl": 1500 * time.Millisecond,
			"spf": 2500 * time.Millisecond, "greylist": 1500 * time.Millisecond}
		if got := shares(d); len(got) != 4 || got["whitelist"] != want["whitelist"] || got["dnsbl"] != want["dnsbl"] ||
			got["spf"] != want["spf"] || got["greylist"] != want["greylist"] {
			t.Fatalf("shares %v, want %v", got, want)
		}
	}
}

// With timeouts that do not fit (only possible without config
// validation), a step gets what is left, and a step left nothing is a
// recorded timeout whose on_error applies: never a silent skip.
func TestEngineShareIsWhatIsLeft(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	onErr := Action{Verb: DeferIfPermit, Text: "4.3.0 try later"}
	grey := fixed("greylist", deferGrey, "new")
	grey.Timeout, grey.OnError = time.Second, onErr
	e := NewEngine(Options{Logger: quiet(), Now: clk.Now, Budget: 3 * time.Second},
		[]Step{taking(clk, "spf", 2500*time.Millisecond, 2500*time.Millisecond), grey})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if d.Action != deferGrey || shares(d)["greylist"] != 500*time.Millisecond {
		t.Fatalf("greylist got %v of the budget: %+v", shares(d)["greylist"], d)
	}
	e = NewEngine(Options{Logger: quiet(), Now: clk.Now, Budget: 2 * time.Second},
		[]Step{taking(clk, "spf", 2500*time.Millisecond, 2500*time.Millisecond), grey})
	d = e.Evaluate(context.Background(), rcpt(), nil)
	if d.Action != onErr || len(d.Errors) != 1 || d.Errors[0].Check != "greylist" || d.Errors[0].Kind != ErrorTimeout {
		t.Fatalf("a step with no time left must fail by its on_error: %+v", d)
	}
}

// A check that honours its context returns before the engine stops
// waiting: its own result counts, not a race with the engine's timer.
func TestEngineContextEndsBeforeTheShare(t *testing.T) {
	partial := funcCheck{"dnsbl", func(ctx context.Context, _ *State) (Result, error) {
		<-ctx.Done() // one list never answers; the others did
		return Result{Action: deferGrey, Reason: "listed by the lists that answered"}, nil
	}}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: partial, Timeout: time.Second}})
	for range 3 {
		if d := e.Evaluate(context.Background(), rcpt(), nil); d.Action != deferGrey || len(d.Errors) != 0 {
			t.Fatalf("the check's own result at its deadline was lost: %+v", d)
		}
	}
}

// A run the engine abandoned writes to a staged view nobody reads: its
// value and header never reach this reply or a later recipient's.
func TestEngineDiscardsWritesAfterDeadline(t *testing.T) {
	release, wrote := make(chan struct{}), make(chan struct{})
	late := funcCheck{"spf", func(_ context.Context, st *State) (Result, error) {
		<-release // ignores its context on purpose
		spfKey.Set(st.Msg, "temperror")
		st.Msg.AddHeader("Received-SPF: temperror")
		close(wrote)
		return Pass("late"), nil
	}}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: late, Timeout: 50 * time.Millisecond}})
	msg := NewMessage("i1")
	d := e.Evaluate(context.Background(), rcpt(), msg)
	if !d.Action.IsDunno() || len(d.Errors) != 1 || d.Errors[0].Kind != ErrorTimeout {
		t.Fatalf("abandoned run: %+v", d)
	}
	close(release)
	<-wrote
	if v, ok := spfKey.Get(msg); ok {
		t.Fatalf("an abandoned run's value reached the message: %v", v)
	}
	e.SetSteps(nil)
	if d := e.Evaluate(context.Background(), rcpt(), msg); d.Action != DunnoAction {
		t.Fatalf("an abandoned run's header reached a later recipient: %v", d.Action)
	}
}

// spfKey is a per-message value as a check would keep one.
var spfKey = NewMessageKey[string]("spf")

// Writes of a run that returned in time are committed, errors included
// (a check may remember its failure for the message's other recipients).
func TestEngineCommitsWritesOfARunInTime(t *testing.T) {
	w := funcCheck{"spf", func(_ context.Context, st *State) (Result, error) {
		spfKey.Set(st.Msg, "pass")
		st.Msg.AddHeader("Received-SPF: pass")
		if v, _ := spfKey.Get(st.Msg); v != "pass" {
			t.Error("a check does not read its own write")
		}
		return Pass("spf pass"), nil
	}}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: w, Timeout: time.Second}})
	msg := NewMessage("i1")
	d := e.Evaluate(context.Background(), rcpt(), msg)
	if d.Action != (Action{Verb: Prepend, Text: "Received-SPF: pass"}) {
		t.Fatalf("got %v", d.Action)
	}
	if v, _ := spfKey.Get(msg); v != "pass" {
		t.Fatalf("value not committed: %v", v)
	}
}
