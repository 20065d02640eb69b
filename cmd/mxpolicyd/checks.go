package main

import (
	"context"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
	"github.com/mxpolicyd/mxpolicyd/replies"
	"github.com/mxpolicyd/mxpolicyd/spf"
	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

// checkSpec is one row of the check table.
type checkSpec struct {
	// name is the check package's Name: the check's key under checks: in
	// the config, and its label in logs, metrics and the decision log.
	name string
	// defaults is its step when the config says nothing: enabled, its
	// share of request_timeout, failing open.
	defaults config.Step
	// build returns the check for cfg, or nil when cfg gives it nothing to
	// do. The wiring calls it at start and on every reload, for enabled
	// checks only.
	build func(w *wiring, ctx context.Context, cfg *config.Config) (policy.Check, error)
	// runsForSASL runs the check for SASL-authenticated clients even
	// under skip_sasl, which spares them every other check
	// (policy.Step.ForSASL).
	runsForSASL bool
	// store: the check's timeouts are its database's, never a sender's,
	// so the engine pauses it after a few in a row (policy.Step.OwnTimeouts).
	store bool
}

// checkTable is every check, in the order the engine runs them; config
// validation and the wiring both read it, and adding a check is its
// package and one row here. The order is part of the decision (README,
// "How a decision is made"):
//
//   - whitelist first: an entry exempts the request from the checks after
//     it (policy.Facts.Skip);
//   - replies, before greylist: a reply to a local user's mail skips
//     greylisting (Facts.Skip, as a whitelist entry); it runs for
//     authenticated clients too, whose mail it learns from;
//   - dnsbl, then spf: each may decide alone, and both record what
//     greylisting reads (the DNS score; the SPF result and domain);
//   - greylist: it reads those results, and it writes state, which
//     only mail that no other check refused should cost;
//   - ratelimit last: it counts only mail that no other check refused.
//     It runs for authenticated clients too (runsForSASL): limiting how
//     fast your own users send is its job, and skip_sasl spares them
//     only the inbound checks. It alone also decides at END-OF-MESSAGE,
//     for byte quotas (policy.EndOfMessageCheck).
//
// The default shares add up to the default request_timeout (6s), so
// under any DNS slowness each check gets its whole share and the same
// request gets the same answer. dnsbl.timeout and spf.timeout, if set,
// can only shorten these shares.
func checkTable() []checkSpec {
	return []checkSpec{
		// In-memory lookups; the store refresh runs in the background.
		{whitelist.Name, defaultStep(250 * time.Millisecond), (*wiring).whitelistCheck, false, false},
		// One indexed read or one upsert; its share came from whitelist's.
		// A slower database fails open: the reply is greylisted.
		{replies.Name, defaultStep(250 * time.Millisecond), (*wiring).repliesCheck, true, true},
		// All lists in parallel: one round trip to the local resolver,
		// or one recursion on a cold cache.
		{dnsbl.Name, defaultStep(1250 * time.Millisecond), (*wiring).dnsblCheck, false, false},
		// Up to a few lookups in sequence (TXT, then include:, a, mx),
		// HELO and MAIL FROM side by side; the probe reuses their answers
		// and costs none. The largest share: an SPF answer is worth
		// waiting for (a fail is the one verdict it gives that refuses),
		// while a list that is slow only fails open.
		{spf.Name, defaultStep(2500 * time.Millisecond), (*wiring).spfCheck, false, false},
		// One upsert; a database slower than this fails open.
		{greylist.Name, defaultStep(1500 * time.Millisecond), (*wiring).greylistCheck, false, true},
		// One statement per decision (one more per distinct_networks
		// rule), on the same database as greylist; a slower database
		// fails open. Without rules the check is not built and takes no
		// time; set checks.ratelimit.enabled: false to give its share
		// back to the others.
		{ratelimit.Name, defaultStep(250 * time.Millisecond), (*wiring).ratelimitCheck, true, true},
	}
}

// defaultStep is a check enabled with its share of the budget, answering
// DUNNO when it fails (fail open).
func defaultStep(share time.Duration) config.Step {
	on := true
	return config.Step{Enabled: &on, Timeout: share, OnError: policy.DunnoAction}
}

// checkDefaults is what config reads of the table: the checks' names,
// in order, with their defaults.
func checkDefaults() []config.CheckDefault {
	var out []config.CheckDefault
	for _, c := range checkTable() {
		out = append(out, config.CheckDefault{Name: c.name, Step: c.defaults})
	}
	return out
}
