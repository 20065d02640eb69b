package policy

import (
	"context"
	"testing"
)

// eomCheck decides at END-OF-MESSAGE too, like byte quotas.
type eomCheck struct{ funcCheck }

func (c eomCheck) CheckEndOfMessage(ctx context.Context, st *State) (Result, error) {
	return Result{Action: Action{Verb: Defer, Text: "4.7.1 size " + st.Req.ProtocolState}, Reason: "eom"}, nil
}

// Under skip_sasl a SASL client meets only the steps marked ForSASL; at
// END-OF-MESSAGE only the checks that ask for it run.
func TestEngineForSASLAndEndOfMessage(t *testing.T) {
	hold := Action{Verb: Hold, Text: "too many networks"}
	limit := fixed("ratelimit", hold, "limited")
	limit.ForSASL = true
	e := NewEngine(Options{Logger: quiet(), SkipSASL: true}, []Step{fixed("greylist", deferGrey, ""), limit})
	r := rcpt()
	r.SASLUsername = "alice"
	d := e.Evaluate(context.Background(), r, nil)
	if d.Action != hold || d.Check != "ratelimit" || d.Action.Class() != ClassHold {
		t.Fatalf("SASL client: %+v, want the ForSASL step's HOLD", d)
	}
	if d := e.Evaluate(context.Background(), rcpt(), nil); d.Action != deferGrey {
		t.Fatalf("other client: %v, want greylisting first", d.Action)
	}

	eom := Step{Check: eomCheck{funcCheck{"ratelimit", nil}}}
	e = NewEngine(Options{Logger: quiet()}, []Step{fixed("greylist", deferGrey, ""), eom})
	r = rcpt()
	r.ProtocolState = "END-OF-MESSAGE"
	if d := e.Evaluate(context.Background(), r, nil); d.Action.String() != "DEFER 4.7.1 size END-OF-MESSAGE" {
		t.Fatalf("END-OF-MESSAGE: %+v", d)
	}
	e = NewEngine(Options{Logger: quiet()}, []Step{fixed("greylist", deferGrey, "")})
	if d := e.Evaluate(context.Background(), r, nil); !d.Action.IsDunno() || d.Reason != "not RCPT stage" {
		t.Fatalf("END-OF-MESSAGE without such a check: %+v", d)
	}
}
