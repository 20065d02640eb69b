package policy

import (
	"context"
	"testing"
	"time"
)

// quickCheck is a QuickCheck whose Quick answers when quick is set;
// checked counts the Check calls.
type quickCheck struct {
	name    string
	quick   func(st *State) (Result, bool)
	checked *int
}

func (q quickCheck) Name() string                   { return q.name }
func (q quickCheck) Quick(st *State) (Result, bool) { return q.quick(st) }
func (q quickCheck) Check(ctx context.Context, st *State) (Result, error) {
	*q.checked++
	if _, ok := ctx.Deadline(); !ok {
		panic("Check without its share's deadline")
	}
	return Result{Action: deferGrey, Reason: "from the store"}, nil
}

func TestQuickDecidesWithoutCheck(t *testing.T) {
	var checked int
	c := quickCheck{"grey", func(st *State) (Result, bool) {
		st.Facts.DNSScore = 2
		st.Msg.AddHeader("X-Quick: yes")
		return Pass("cached"), true
	}, &checked}
	var seen float64
	after := funcCheck{"after", func(_ context.Context, st *State) (Result, error) {
		seen = st.Facts.DNSScore
		return Pass(""), nil
	}}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: c, Timeout: time.Second}, {Check: after}})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if checked != 0 {
		t.Errorf("Check ran %d times after Quick decided", checked)
	}
	if d.Action.Verb != Prepend || d.Action.Text != "X-Quick: yes" || d.Reason != "cached" {
		t.Errorf("decision %+v, want Quick's pass with its header", d)
	}
	if seen != 2 || len(d.Timings) != 2 || d.Timings[0].Check != "grey" {
		t.Errorf("Quick's facts reached the next check as %v, timings %+v", seen, d.Timings)
	}
}

func TestQuickDeclinesThenCheckRuns(t *testing.T) {
	var checked int
	c := quickCheck{"grey", func(*State) (Result, bool) { return Result{}, false }, &checked}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: c, Timeout: time.Second}})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if checked != 1 || d.Action != deferGrey || d.Reason != "from the store" {
		t.Fatalf("checked %d times, decision %+v: want Check's answer once", checked, d)
	}
}

func TestQuickPanicIsTheCheckFailure(t *testing.T) {
	var checked int
	c := quickCheck{"grey", func(*State) (Result, bool) { panic("bug") }, &checked}
	e := NewEngine(Options{Logger: quiet()}, []Step{{Check: c, OnError: deferGrey}})
	d := e.Evaluate(context.Background(), rcpt(), nil)
	if checked != 0 || d.Action != deferGrey || d.Reason != "grey failed" || len(d.Errors) != 1 {
		t.Fatalf("checked %d, decision %+v: want on_error for the panic", checked, d)
	}
}
