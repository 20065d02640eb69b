package policy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// recorder is an AttemptRecorder that counts the attempts it was given; a
// seam the engine owns.
type recorder struct {
	funcCheck
	attempts []string // recipients recorded
	err      error
}

func (r *recorder) RecordAttempt(_ context.Context, st *State) error {
	r.attempts = append(r.attempts, st.Req.Recipient)
	return r.err
}

// Postfix goes on after a defer_if_permit ("defer the request if some
// later restriction would result in an explicit or implicit PERMIT
// action", access(5)), so a greylisting service after an SPF one sees the
// attempts SPF deferred. The engine lets the recorders after a check
// that answered DEFER_IF_PERMIT record the attempt, and keeps its verdict;
// after any other decisive answer, a REJECT or a plain DEFER, they see
// nothing, as Postfix's later restrictions would not.
func TestEngineRecordsAttemptsAfterDeferIfPermit(t *testing.T) {
	tempfail := Action{Verb: DeferIfPermit, Text: "4.7.24 SPF temporary error"}
	for _, tc := range []struct {
		name     string
		first    Action
		skip     bool
		err      error
		recorded int
	}{
		{"defer_if_permit", tempfail, false, nil, 1},
		{"defer_if_permit, the recorder failing", tempfail, false, errors.New("store down"), 1},
		{"defer_if_permit, the recorder skipped by a whitelist", tempfail, true, nil, 0},
		{"reject", Action{Verb: Code, Code: "550", Text: "5.7.1 listed"}, false, nil, 0},
		{"defer", Action{Verb: Defer, Text: "4.7.1 later"}, false, nil, 0},
		{"dunno", DunnoAction, false, nil, 1},
		{"on_error defer_if_permit", Action{}, false, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failing := tc.first == (Action{}) // the first check fails, and its on_error defers
			rec := &recorder{err: tc.err}
			rec.funcCheck = funcCheck{"grey", func(_ context.Context, st *State) (Result, error) {
				rec.attempts = append(rec.attempts, "checked:"+st.Req.Recipient)
				return Result{Action: deferGrey}, nil
			}}
			first := funcCheck{"spf", func(_ context.Context, st *State) (Result, error) {
				if tc.skip {
					st.Facts.Skip = st.Facts.Skip.With("grey")
				}
				if failing {
					return Result{}, errors.New("resolver down")
				}
				return Result{Action: tc.first, Reason: "first"}, nil
			}}
			firstStep, wantErrs := Step{Check: first}, 0
			if failing {
				tc.first, firstStep.OnError, wantErrs = tempfail, tempfail, 1
			}
			e := NewEngine(Options{Logger: quiet()}, []Step{firstStep, {Check: rec, Timeout: time.Second}})
			d := e.Evaluate(context.Background(), rcpt(), nil)
			if tc.first.IsDunno() {
				if d.Action != deferGrey || len(rec.attempts) != 1 || rec.attempts[0] != "checked:r@x" {
					t.Fatalf("a DUNNO first: %v, recorder saw %q; want its Check only", d.Action, rec.attempts)
				}
				return
			}
			if d.Action != tc.first || d.Check != "spf" || len(d.Errors) != wantErrs {
				t.Errorf("verdict %v by %q, errors %v; want %v by spf, none but its own", d.Action, d.Check, d.Errors, tc.first)
			}
			if len(rec.attempts) != tc.recorded || tc.recorded == 1 && rec.attempts[0] != "r@x" {
				t.Errorf("recorder saw %q; want %d recorded attempt(s)", rec.attempts, tc.recorded)
			}
		})
	}
}
