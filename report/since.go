package report

import (
	"fmt"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/quote"
	"github.com/mxpolicyd/mxpolicyd/internal/when"
)

// ParseSince reads the --since of `mxpolicyd report`: a duration back from
// now ("7d", "2w", "36h", "1h30m"), a UTC date ("2026-11-01", from its
// midnight) or an RFC 3339 instant.
func ParseSince(s string, now time.Time) (time.Time, error) {
	t, err := when.Parse(s, now, -1, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("report: --since %s: %w", quote.Short(s), err)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("report: --since %s is in the future: nothing was decided after it", quote.Short(s))
	}
	return t, nil
}
