package greylist_test

import (
	"context"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Two MX hosts share one PostgreSQL, and host A's clock runs ten minutes
// fast. With the offset the daemon measures (internal/db: DB.ClockOffset) given to
// the engine, both store the server's time: a retry after the delay
// passes whichever host saw the first attempt, and one before it is
// deferred. Without it (the control), A's first attempt stamps a time
// ten minutes ahead, so B defers the retry long after the delay, and A
// passes a retry to B's triplet before it.
func TestHostsWithSkewedClocks(t *testing.T) {
	const skew = 10 * time.Minute
	cfg := greylist.DefaultConfig()
	cfg.Delay = 2 * time.Minute
	for _, corrected := range []bool{true, false} {
		d := openDB(t, pgtest.New(t))
		var elapsed time.Duration // true time since start, on the test's clock
		host := func(ahead time.Duration) *policy.Engine {
			g, err := greylist.New(cfg, greylist.NewStore(d), greylist.Options{})
			if err != nil {
				t.Fatal(err)
			}
			opt := policy.Options{Now: func() time.Time { return start.Add(elapsed + ahead) }}
			if corrected { // the server's clock is the test's: its offset from this host is -ahead
				opt.ClockOffset = func() time.Duration { return -ahead }
			}
			return policy.NewEngine(opt, []policy.Step{{Check: g, Timeout: 5 * time.Second}})
		}
		a, b := host(skew), host(0)
		// Two triplets of different clients and senders, so the first one's
		// pass auto-whitelists nothing the second one uses.
		decide := func(e *policy.Engine, client, sender string) *policy.Decision {
			return e.Evaluate(context.Background(), request(client, sender, "bob@example.net"), nil)
		}

		// First attempt on A; the retry, after the delay, on B.
		if d := decide(a, "192.0.2.10", "alice@example.org"); !deferred(d) {
			t.Fatalf("corrected=%v: first attempt on A: %v", corrected, d.Action)
		}
		elapsed += cfg.Delay + time.Second
		retryB := decide(b, "192.0.2.10", "alice@example.org")

		// First attempt on B; a retry half-way through the delay on A.
		if d := decide(b, "198.51.100.20", "carol@example.com"); !deferred(d) {
			t.Fatalf("corrected=%v: first attempt on B: %v", corrected, d.Action)
		}
		elapsed += cfg.Delay / 2
		earlyA := decide(a, "198.51.100.20", "carol@example.com")

		if corrected {
			if deferred(retryB) || retryB.Reason != "passed after delay" {
				t.Errorf("retry after the delay on B: %v (%s), want it passed after the delay", retryB.Action, retryB.Reason)
			}
			if !deferred(earlyA) || earlyA.Reason != "early retry" {
				t.Errorf("retry before the delay on A: %v (%s), want an early retry", earlyA.Action, earlyA.Reason)
			}
			continue
		}
		if !deferred(retryB) {
			t.Errorf("control: retry on B after the delay passed (%s), so the skew did not matter and this test shows nothing", retryB.Reason)
		}
		if deferred(earlyA) {
			t.Errorf("control: early retry on A deferred (%s), so the skew did not matter and this test shows nothing", earlyA.Reason)
		}
	}
}

// deferred: a pass is DUNNO or, for a message's first pass, the
// X-Greylist PREPEND.
func deferred(d *policy.Decision) bool { return d.Action.Verb == policy.DeferIfPermit }
