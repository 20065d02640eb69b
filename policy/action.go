package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Verb is the first word of a reply action (access(5)).
type Verb string

// The verbs mxpolicyd answers with. OK is never used: it would end
// Postfix's restriction list ("return DUNNO instead of OK", SMTPD_POLICY_README).
const (
	Dunno         Verb = "DUNNO"
	Reject        Verb = "REJECT"
	Defer         Verb = "DEFER"
	DeferIfPermit Verb = "DEFER_IF_PERMIT"
	DeferIfReject Verb = "DEFER_IF_REJECT"
	Prepend       Verb = "PREPEND"
	Warn          Verb = "WARN"
	// Hold accepts the mail into the hold queue, where it waits for the
	// admin (access(5), "HOLD optional text"): rate limits use it for an
	// account that looks stolen.
	Hold Verb = "HOLD"
	// Code is an explicit SMTP reply: Action.Code holds "4NN" or "5NN".
	Code Verb = "CODE"
)

// Action is one reply. Build it as a literal (Action{Verb: Reject, Text:
// "5.7.1 listed"}), with ParseAction from config text, or as DunnoAction;
// never as a wire string: String renders the only forms Postfix reads
// correctly, and Validate says what it would refuse.
type Action struct {
	Verb Verb
	Code string // "450", "550" when Verb is Code
	Text string // for Code: enhanced status code and text, e.g. "5.7.23 SPF fail"
}

// DunnoAction is the neutral answer: let the next restriction decide.
var DunnoAction = Action{Verb: Dunno}

// String renders the action as it goes after "action=".
func (a Action) String() string {
	if a.Text == "" {
		return a.head()
	}
	return a.head() + " " + a.Text
}

// IsDunno reports whether the action lets mail through unchanged.
func (a Action) IsDunno() bool { return a.Verb == Dunno || a.Verb == "" }

// Wire renders "action=...\n\n". It falls back to DUNNO for an action that
// Postfix would misread, so a bug here can never turn into a lost mail or an
// unintended accept.
func (a Action) Wire() []byte { return a.AppendWire(nil) }

// AppendWire appends the wire form (Wire) to b, so that the server can
// render a reply into a buffer it reuses.
func (a Action) AppendWire(b []byte) []byte {
	if a.Validate() != nil {
		a = DunnoAction
	}
	b = append(b, "action="...)
	if a.Verb == Code {
		b = append(b, a.Code...)
	} else {
		b = append(b, a.Verb...)
	}
	if a.Text != "" {
		b = append(b, ' ')
		b = append(b, a.Text...)
	}
	return append(b, "\n\n"...)
}

// breaksLine reports a newline, carriage return or NUL in s: three
// vectorized byte searches, where strings.ContainsAny walks s once per
// rune; Validate runs for every reply and every decision recorded, on
// header texts of a few hundred bytes.
func breaksLine(s string) bool {
	return strings.IndexByte(s, '\n') >= 0 || strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, 0) >= 0
}

// Validate rejects what Postfix would misread: a newline or NUL would end
// the reply early; a bare number reads as OK (smtpd_check.c
// check_table_result tests alldig() before the 4NN/5NN branch, and that
// branch needs text after the code).
func (a Action) Validate() error {
	if breaksLine(a.Text) {
		return errors.New("policy: action text contains a line break or NUL")
	}
	switch a.Verb {
	case Dunno, Warn, Hold:
		return nil
	case Prepend:
		name, _, ok := strings.Cut(a.Text, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("policy: PREPEND needs \"Header-Name: value\", got %q", a.Text)
		}
		return nil
	case Code:
		if !validCode(a.Code) {
			return fmt.Errorf("policy: reply code %q is not 4NN or 5NN", a.Code)
		}
		if strings.TrimSpace(a.Text) == "" {
			return fmt.Errorf("policy: reply code %s needs text (a bare number reads as OK)", a.Code)
		}
		return a.checkDSN(a.Code[0])
	case Reject:
		return a.checkDSN('5')
	case Defer, DeferIfPermit, DeferIfReject:
		return a.checkDSN('4')
	}
	return fmt.Errorf("policy: unknown action verb %q", a.Verb)
}

// checkDSN refuses text that begins with an enhanced status code (RFC
// 3463 §2, "class.subject.detail") of another class than the reply's:
// Postfix sends the reply's class whatever the text says (smtpd_check.c,
// smtpd_check_reject: "enforce consistency between the SMTP code and DSN
// code. SMTP has the higher precedence"), so the action logged and
// recorded would not be the one the client got.
func (a Action) checkDSN(class byte) error {
	if dsn, ok := leadingDSN(a.Text); ok && dsn[0] != class {
		return fmt.Errorf("policy: %s with status code %s: a %c.x.x status belongs to a %cNN reply (RFC 3463 §3.1)",
			a.head(), dsn, dsn[0], dsn[0])
	}
	return nil
}

// head is the action's first word: its verb, or its code.
func (a Action) head() string {
	if a.Verb == Code {
		return a.Code
	}
	return string(a.Verb)
}

// leadingDSN returns the enhanced status code text begins with, if any:
// a class digit 2, 4 or 5, then "." and one to three digits, twice
// (RFC 3463 §2), then a space or the end.
func leadingDSN(text string) (string, bool) {
	dsn, _, _ := strings.Cut(text, " ")
	if len(dsn) < 5 || (dsn[0] != '2' && dsn[0] != '4' && dsn[0] != '5') || dsn[1] != '.' {
		return "", false
	}
	subject, detail, ok := strings.Cut(dsn[2:], ".")
	return dsn, ok && digits(subject, 3) && digits(detail, 3)
}

// digits reports whether s is 1 to n ASCII digits.
func digits(s string, n int) bool {
	if len(s) == 0 || len(s) > n {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validCode(c string) bool {
	return len(c) == 3 && (c[0] == '4' || c[0] == '5') &&
		c[1] >= '0' && c[1] <= '9' && c[2] >= '0' && c[2] <= '9'
}

// ParseAction reads an action as an admin writes it in the config file:
// "DUNNO", "DEFER_IF_PERMIT text", "550 5.7.23 text", "REJECT text".
func ParseAction(s string) (Action, error) {
	s = strings.TrimSpace(s)
	head, text, _ := strings.Cut(s, " ")
	text = strings.TrimSpace(text)
	var a Action
	if validCode(head) {
		a = Action{Verb: Code, Code: head, Text: text}
	} else {
		a = Action{Verb: Verb(strings.ToUpper(head)), Text: text}
	}
	if err := a.Validate(); err != nil {
		return Action{}, err
	}
	return a, nil
}

// Fallback is the reply for a config template (an action with
// placeholders, as ParseAction reads it once they are filled) that a
// message's values could not fill into a valid action: the verb or code
// the template begins with, so that a temporary refusal stays temporary,
// and text. ok is false when the template begins with a placeholder.
func Fallback(tmpl, text string) (a Action, ok bool) {
	head, _, _ := strings.Cut(strings.TrimSpace(tmpl), " ")
	if strings.Contains(head, "{") {
		return Action{}, false
	}
	a, err := ParseAction(head + " " + text)
	return a, err == nil
}

// IsReject reports whether the action refuses the recipient permanently.
func (a Action) IsReject() bool {
	return a.Verb == Reject || (a.Verb == Code && a.Code[0] == '5')
}

// IsDefer reports whether the action refuses the recipient temporarily.
func (a Action) IsDefer() bool {
	return a.Verb == Defer || a.Verb == DeferIfPermit || a.Verb == DeferIfReject ||
		(a.Verb == Code && a.Code[0] == '4')
}

// Class is what an action does to the mail, whatever its spelling. It is
// the one classification of actions: the action label of the decisions
// metric is the Class, and the decision log's verb column is the Class in
// upper case (migrations/*/0003_decisions.sql), so dashboards and reports
// call a deferral the same thing.
type Class string

// The classes, after access(5).
const (
	// ClassDunno: no verdict, the next restriction decides. Also the class
	// of an invalid action, which Wire sends as DUNNO.
	ClassDunno Class = "dunno"
	// ClassPrepend: no verdict, a header is added.
	ClassPrepend Class = "prepend"
	// ClassWarn: no verdict, Postfix logs a warning.
	ClassWarn Class = "warn"
	// ClassDefer: refused for now (DEFER, DEFER_IF_PERMIT, DEFER_IF_REJECT,
	// a 4NN code); the client retries.
	ClassDefer Class = "defer"
	// ClassReject: refused for good (REJECT, a 5NN code).
	ClassReject Class = "reject"
	// ClassHold: accepted into the hold queue until the admin releases
	// or deletes it (HOLD).
	ClassHold Class = "hold"
)

// Class returns the action's class: what Postfix does with it as sent.
func (a Action) Class() Class {
	switch {
	case a.Validate() != nil:
		return ClassDunno // Wire sends DUNNO instead
	case a.IsReject():
		return ClassReject
	case a.IsDefer():
		return ClassDefer
	case a.Verb == Prepend:
		return ClassPrepend
	case a.Verb == Warn:
		return ClassWarn
	case a.Verb == Hold:
		return ClassHold
	}
	return ClassDunno
}

// MarshalText lets actions appear in JSON logs and config dumps.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses the config-file form. Empty text leaves the zero
// Action, "not set", so a config key written empty keeps its default.
func (a *Action) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*a = Action{}
		return nil
	}
	p, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = p
	return nil
}
