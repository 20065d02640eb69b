package policy

import (
	"context"
	"time"
)

// Check is one step of the decision. The engine calls checks in a fixed
// order and the first decisive result answers Postfix. A Check must honour
// ctx's deadline; the engine stops waiting at the deadline regardless.
type Check interface {
	Name() string
	Check(ctx context.Context, st *State) (Result, error)
}

// QuickCheck is a Check that can often decide from memory alone: a pass
// it cached, a table it holds, or a request it has nothing to ask about.
// The engine calls Quick first, on the request's own goroutine, with no
// timer and no staging: the run cannot overrun, so nothing needs guarding.
// Only when Quick says it cannot decide does the check run as any other,
// on a goroutine of its own under its share of the budget.
//
// Quick must not block, do I/O or wait on a lock another request may hold
// for long. When it returns ok false it must have changed nothing: not
// st, not the message.
type QuickCheck interface {
	Check
	Quick(st *State) (res Result, ok bool)
}

// Result is what a check concluded. An Action other than DUNNO is decisive.
// Headers a check wants added go through State.Msg.AddHeader instead.
type Result struct {
	Action Action
	Reason string        // short and stable: "listed zen.spamhaus.org", "new triplet"
	Delay  time.Duration // greylisting: how long the triplet was delayed
}

// Pass is the non-decisive result with a reason for the log.
func Pass(reason string) Result { return Result{Action: DunnoAction, Reason: reason} }

// State is what one request's checks share. Each check gets its own copy
// and the engine keeps the copy only if the check finished in time, so a
// check that overruns can never change what later checks see.
type State struct {
	Req   *Request
	Msg   *Message
	Now   time.Time
	Facts Facts
}

// Facts are conclusions of earlier checks that later ones use: greylisting
// keys by SPF authorization and may greylist only suspicious clients, so
// it runs after the checks that set them (cmd/mxpolicyd/checks.go).
type Facts struct {
	Skip      CheckSet  // checks a whitelist entry exempts this request from
	Whitelist string    // the whitelist entry that matched, for logs
	DNSScore  float64   // sum of DNS list weights (negative: allowlisted)
	DNSListed []string  // display names of the lists that matched
	DNSAllow  bool      // an allowlist (negative weight) matched
	SPF       SPFResult // "" if not checked
	SPFDomain string    // the domain whose SPF policy authorized the client
}

// SPFResult is the result of an SPF evaluation (RFC 7208 §2.6). It is
// declared here, with the facts that carry it from the SPF check to
// greylisting; package spf calls it spf.Result.
type SPFResult string

// The SPF results (RFC 7208 §2.6), spelt as in Received-SPF (§9.1).
const (
	SPFNone      SPFResult = "none"
	SPFNeutral   SPFResult = "neutral"
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFTempError SPFResult = "temperror"
	SPFPermError SPFResult = "permerror"
)

// CheckSet is a set of check names.
type CheckSet map[string]bool

// AllChecks in a CheckSet stands for every check.
const AllChecks = "all"

// With returns a copy of s with names added; s itself is never changed
// because State copies share it.
func (s CheckSet) With(names ...string) CheckSet {
	n := make(CheckSet, len(s)+len(names))
	for k := range s {
		n[k] = true
	}
	for _, k := range names {
		n[k] = true
	}
	return n
}

// Has reports whether name is in the set; AllChecks matches every name.
func (s CheckSet) Has(name string) bool { return s[name] || s[AllChecks] }
