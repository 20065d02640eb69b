package policy_test

import (
	"testing"

	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/policy/policytest"
)

// Class is what the action does, however it is spelt; an action Wire
// would not send as it is has the class of what Wire sends, DUNNO.
func TestActionClass(t *testing.T) {
	for in, want := range policytest.ActionClasses() {
		a, err := policy.ParseAction(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Class(); got != want {
			t.Errorf("%q.Class() = %q, want %q", in, got, want)
		}
	}
	for _, a := range []policy.Action{{}, {Verb: "OK"}, {Verb: policy.Code}, {Verb: policy.Code, Code: "550"},
		{Verb: policy.Reject, Text: "a\nb"}} {
		if got := a.Class(); got != policy.ClassDunno {
			t.Errorf("%#v.Class() = %q, want dunno (Wire sends DUNNO)", a, got)
		}
	}
}
