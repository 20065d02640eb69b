package report

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// A greylisted triplet whose retry passes greylisting after its delay and
// is then held by a rate-limit rule (the rate-limit check runs after
// greylisting, and the engine keeps greylisting's delay on the final
// verdict: policy/engine.go, verdict.end) was accepted into the hold
// queue: its sender retried and came back after 300 s. docs/reporting.md:
// report_never_retried lists triplets "that never passed afterwards",
// "mostly spam engines that do not retry"; passed_after_delay and
// report_retry_delay count "greylisting passes that had been delayed".
// README: HOLD means "the message is accepted into the hold queue".
func TestHeldRetryIsAGreylistingPass(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		decs := []dec{
			{time: "2026-11-01 10:00", client: "192.0.2.10", sender: "a@example.net", rcpt: "u@example.org",
				check: "greylist", action: greylisted},
			{time: "2026-11-01 10:05", client: "192.0.2.10", sender: "a@example.net", rcpt: "u@example.org",
				check: "ratelimit", action: "HOLD inbound-per-network: too fast", delay: 300 * time.Second},
		}
		rows := make([]decisionlog.Row, len(decs))
		for i, x := range decs {
			rows[i] = x.row(t)
			rows[i].Reason = "" // as the engine gives it, irrelevant here
		}
		if rows[1].Verb != decisionlog.VerbHold {
			t.Fatalf("verb %q, want HOLD", rows[1].Verb)
		}
		if err := decisionlog.Insert(ctx, d, rows); err != nil {
			t.Fatal(err)
		}
		never, err := NeverRetried(ctx, d, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(never) != 0 {
			t.Errorf("report_never_retried lists a triplet that retried and was accepted (held): %+v", never)
		}
		daily, err := Daily(ctx, d, time.Time{})
		if err != nil || len(daily) != 1 || daily[0].PassedAfterDelay != 1 {
			t.Errorf("report_daily = %+v, %v; want passed_after_delay 1", daily, err)
		}
		retry, err := RetryDelay(ctx, d, time.Time{})
		if err != nil || len(retry) != 1 || retry[0].Passes != 1 {
			t.Errorf("report_retry_delay = %+v, %v; want 1 pass of 300 s", retry, err)
		}
	})
}
