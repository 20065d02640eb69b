// Package policy speaks Postfix's policy delegation protocol and decides
// each request by running a fixed chain of checks. A request flows one way:
//
//   - Server accepts Postfix's connections (Serve, Shutdown, shaped like
//     net/http) and reads one request block at a time.
//   - ReadRequest parses the block strictly into a typed Request: one
//     name=value per line, capped in size, unknown names ignored
//     (SMTPD_POLICY_README, "Protocol description").
//   - Engine.Decide runs the Steps in order. Each step is one Check with
//     its share of the request budget (its timeout, cut to what is left)
//     and its on_error Action. A check runs on a copy of the State and a
//     staged view of the Message; its writes (per-message values under a
//     MessageKey, headers to PREPEND) and its Facts for later checks are
//     kept only if it returned within its share. A QuickCheck is first
//     asked to decide from memory (a cached pass, a table it holds) on the
//     request's own goroutine; only when it cannot does it run so, on a
//     goroutine of its own. The first decisive Result
//     (anything but DUNNO) answers; a failed step answers its on_error
//     action, or is passed over when that is DUNNO.
//   - Before Decide returns, the engine logs the decision line and the
//     Recorders (the decision log, the metrics) receive the Decision; each
//     only queues it, so the reply waits for no I/O.
//   - The Server writes the one reply, Action.Wire: "action=...", then an
//     empty line.
//
// The package knows no check by name: which checks exist, and their
// order, is the daemon's check table (cmd/mxpolicyd/checks.go). What the
// checks tell each other travels in Facts, typed (SPFResult, the DNS
// score); Action.Class and KindOf are the one classification of actions
// and of check failures that logs, metrics and the decision log share.
package policy
