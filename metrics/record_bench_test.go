package metrics

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// BenchmarkRecord is Record on the known-passing path: a DUNNO from the
// greylist pass cache after the whitelist, each check timed.
func BenchmarkRecord(b *testing.B) {
	m := New()
	d := &policy.Decision{Check: "greylist", Action: policy.DunnoAction, Reason: "passed before (cached)",
		Duration: 40 * time.Microsecond, Timings: []policy.CheckTiming{
			{Check: "whitelist", Duration: 3 * time.Microsecond}, {Check: "greylist", Duration: 2 * time.Microsecond}}}
	b.ReportAllocs()
	for range b.N {
		m.Record(d)
	}
}
