// Package policytest holds what tests of several packages share about
// policy's types.
package policytest

import "github.com/mxpolicyd/mxpolicyd/policy"

// ActionClasses returns actions as Postfix reads them (access(5)) with the
// class each has, however it is spelt: policy's Class, the metrics' action
// label and the decision log's verb are all checked against this one table.
func ActionClasses() map[string]policy.Class {
	return map[string]policy.Class{
		"DUNNO":                          policy.ClassDunno,
		"REJECT":                         policy.ClassReject,
		"REJECT 5.7.1 listed":            policy.ClassReject,
		"550 5.7.1 no":                   policy.ClassReject,
		"550 5.7.23 SPF fail":            policy.ClassReject,
		"450 4.7.1 later":                policy.ClassDefer,
		"450 4.7.1 try later":            policy.ClassDefer,
		"DEFER text":                     policy.ClassDefer,
		"DEFER 4.7.1 later":              policy.ClassDefer,
		"DEFER_IF_PERMIT 4.2.0 grey":     policy.ClassDefer,
		"DEFER_IF_PERMIT 4.2.0 Greylist": policy.ClassDefer,
		"DEFER_IF_REJECT x":              policy.ClassDefer,
		"DEFER_IF_REJECT 4.7.1 later":    policy.ClassDefer,
		"PREPEND X-Spam: yes":            policy.ClassPrepend,
		"PREPEND X-Greylist: delayed":    policy.ClassPrepend,
		"WARN hmm":                       policy.ClassWarn,
		"WARN odd":                       policy.ClassWarn,
		"HOLD account looks stolen":      policy.ClassHold,
	}
}
