package config

import (
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// testChecks stands in for the daemon's check table (cmd/mxpolicyd/checks.go,
// which config cannot import): the same names, order and defaults, so the
// tests here load files as the daemon does.
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
