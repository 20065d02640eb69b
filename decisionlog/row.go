package decisionlog

import (
	"net/netip"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Row is one line of the decisions table (migrations/*/0003_decisions.sql
// documents each column).
type Row struct {
	Time        time.Time
	Host        string
	Client      netip.Addr // invalid: Postfix sent no client_address
	ClientName  string
	Helo        string
	Sender      string
	Recipient   string
	Instance    string
	QueueID     string
	Check       string
	Action      string
	WouldAction string
	Verb        string // one of the Verb* constants
	Reason      string
	Delay       time.Duration
	Duration    time.Duration
	Observe     bool
	Whitelist   string
	Errors      string
}

// The verbs of the verb column: the action classes (policy.Class) in
// upper case, the values the column's CHECK constraint and the report
// views expect (migrations/*/0003_decisions.sql; HOLD since
// 0004_ratelimit.sql).
const (
	VerbDunno   = "DUNNO"
	VerbPrepend = "PREPEND"
	VerbWarn    = "WARN"
	VerbDefer   = "DEFER"
	VerbReject  = "REJECT"
	VerbHold    = "HOLD"
)

// FromDecision copies what the table keeps of a decision. It copies
// values, never pointers, so the row stays valid whatever the server does
// with the request afterwards.
func FromDecision(d *policy.Decision, host string) Row {
	r := Row{
		Time:     d.Time.UTC(),
		Host:     host,
		Check:    d.Check,
		Action:   d.ActionText(),
		Reason:   d.Reason,
		Delay:    d.Delay,
		Duration: d.Duration,
		Observe:  d.Observe,
	}
	if req := d.Req; req != nil {
		r.Client = req.ClientAddress.Unmap()
		r.ClientName, r.Helo = req.ClientName, req.HeloName
		r.Sender, r.Recipient = req.Sender, req.Recipient
		r.Instance, r.QueueID = req.Instance, req.QueueID
	}
	decided := d.Action
	if d.Observe {
		r.WouldAction = d.Would.String()
		decided = d.Would
	}
	r.Verb = Verb(decided)
	r.Whitelist = d.Facts.Whitelist
	r.Errors = errorChecks(d.Errors)
	return r
}

// Verb reduces an action to the word reports count: what it does to the
// mail, not how it is spelled. It is the action's class, the same word
// the metrics label carries, in the upper case the table stores:
// DEFER_IF_PERMIT and 4NN codes are DEFER, 5NN codes REJECT (access(5)).
func Verb(a policy.Action) string {
	c := string(a.Class())
	for _, v := range verbs {
		if strings.EqualFold(v, c) {
			return v // no copy per decision, as ToUpper would make
		}
	}
	return strings.ToUpper(c)
}

// verbs are the Verb* constants, the values Verb returns.
var verbs = [...]string{VerbDunno, VerbPrepend, VerbWarn, VerbDefer, VerbReject, VerbHold}

func errorChecks(errs []policy.CheckError) string {
	if len(errs) == 0 {
		return ""
	}
	names := make([]string, len(errs))
	for i, e := range errs {
		names[i] = e.Check
	}
	return strings.Join(names, ",")
}
