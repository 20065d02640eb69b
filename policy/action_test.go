package policy

import "testing"

func TestActionWire(t *testing.T) {
	tests := []struct {
		in   Action
		want string
	}{
		{DunnoAction, "action=DUNNO\n\n"},
		{Action{Verb: DeferIfPermit, Text: "4.2.0 Greylisted"}, "action=DEFER_IF_PERMIT 4.2.0 Greylisted\n\n"},
		{Action{Verb: Code, Code: "550", Text: "5.7.23 SPF fail"}, "action=550 5.7.23 SPF fail\n\n"},
		{Action{Verb: Prepend, Text: "X-Greylist: delayed 60 seconds"}, "action=PREPEND X-Greylist: delayed 60 seconds\n\n"},
		// Postfix reads a bare number as OK: never send one.
		{Action{Verb: Code, Code: "450"}, "action=DUNNO\n\n"},
		{Action{Verb: Code, Code: "450", Text: "  "}, "action=DUNNO\n\n"},
		// A newline would end the reply early and inject an attribute.
		{Action{Verb: Reject, Text: "bad\naction=OK"}, "action=DUNNO\n\n"},
		{Action{Verb: Reject, Text: "bad\raction=OK"}, "action=DUNNO\n\n"},
		{Action{Verb: Prepend, Text: "X-A: b\x00c"}, "action=DUNNO\n\n"},
		{Action{Verb: Prepend, Text: "no colon"}, "action=DUNNO\n\n"},
		{Action{Verb: "OK"}, "action=DUNNO\n\n"},
		{Action{Verb: Code, Code: "250", Text: "ok"}, "action=DUNNO\n\n"},
	}
	for _, tc := range tests {
		if got := string(tc.in.Wire()); got != tc.want {
			t.Errorf("%#v.Wire() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseAction(t *testing.T) {
	good := map[string]Action{
		"dunno":                       DunnoAction,
		"DEFER_IF_PERMIT 4.7.24 temp": {Verb: DeferIfPermit, Text: "4.7.24 temp"},
		"550 5.7.23 SPF fail":         {Verb: Code, Code: "550", Text: "5.7.23 SPF fail"},
		"reject listed":               {Verb: Reject, Text: "listed"},
		"HOLD x":                      {Verb: Hold, Text: "x"},
	}
	for in, want := range good {
		got, err := ParseAction(in)
		if err != nil || got != want {
			t.Errorf("ParseAction(%q) = %#v, %v; want %#v", in, got, err, want)
		}
	}
	for _, bad := range []string{"450", "OK", "250 fine", "", "PREPEND", "DISCARD x"} {
		if _, err := ParseAction(bad); err == nil {
			t.Errorf("ParseAction(%q) accepted", bad)
		}
	}
	a, _ := ParseAction("550 5.7.1 no")
	if !a.IsReject() || a.IsDefer() {
		t.Error("550 should be a reject")
	}
	a, _ = ParseAction("DEFER_IF_PERMIT x")
	if !a.IsDefer() || a.IsReject() {
		t.Error("DEFER_IF_PERMIT should be a defer")
	}
}

// An enhanced status code of another class than the reply's is refused:
// Postfix would send the reply's class (smtpd_check.c,
// smtpd_check_reject), so the action logged would not be the one sent.
func TestParseActionDSNClass(t *testing.T) {
	for _, bad := range []string{
		"550 4.7.23 SPF fail",
		"450 5.7.1 try later",
		"REJECT 4.7.1 listed",
		"DEFER_IF_PERMIT 5.7.1 try later",
		"DEFER 5.7.1 try later",
		"554 2.0.0 ok",
	} {
		if a, err := ParseAction(bad); err == nil {
			t.Errorf("ParseAction(%q) = %q accepted; Postfix would send it as another status", bad, a)
		}
	}
	for _, good := range []string{
		"550 5.7.23 SPF fail", "450 4.7.1 try later", "REJECT 5.7.1 listed", "DEFER_IF_PERMIT 4.7.1 later",
		"REJECT listed", "550 see 4.7.1", "450 4.7 not a status", "DUNNO", "WARN 4.7.1 noted", "HOLD 5.7.1 held",
	} {
		if _, err := ParseAction(good); err != nil {
			t.Errorf("ParseAction(%q): %v", good, err)
		}
	}
}
