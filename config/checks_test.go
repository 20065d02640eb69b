package config

import (
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// testChecks stands in for the daemon's check table (cmd/mxpolicyd/checks.go,
// which config cannot import): a table of the same shape, so the tests here
// load files as the daemon does, not a copy of it. The real table's
// defaults are tested where it is (cmd/mxpolicyd/checks_test.go).
var testChecks = []CheckDefault{
	{"whitelist", testStep(500 * time.Millisecond)},
	{"dnsbl", testStep(1500 * time.Millisecond)},
	{"spf", testStep(2500 * time.Millisecond)},
	{"greylist", testStep(1500 * time.Millisecond)},
}

func testStep(share time.Duration) Step {
	on := true
	return Step{Enabled: &on, Timeout: share, OnError: policy.DunnoAction}
}
