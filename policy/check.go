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
// keys by SPF authorization and may greylist only suspicious clients.
type Facts struct {
	Skip      CheckSet // checks a whitelist entry exempts this request from
	Whitelist string   // the whitelist entry that matched, for logs
	DNSScore  float64  // sum of DNS list weights (negative: allowlisted)
	DNSListed []string // display names of the lists that matched
	DNSAllow  bool     // an allowlist (negative weight) matched
	SPF       string   // SPF result ("pass", "fail", ...); "" if not checked
	SPFDomain string   // the domain whose SPF policy authorized the client
}

// CheckSet is a set of check names.
type CheckSet map[string]bool

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

// Has reports whether name is in the set; "all" matches every name.
func (s CheckSet) Has(name string) bool { return s[name] || s["all"] }
