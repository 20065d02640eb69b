package report

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseSince reads the --since of `mxpolicyd report`: a duration back from
// now ("7d", "2w", "36h", "1h30m"), a UTC date ("2026-11-01", from its
// midnight) or an RFC 3339 instant.
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("report: --since: empty; want a duration like 7d or 24h, or a date like 2026-11-01")
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := parseAgo(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("report: --since %q: want a duration like 7d, 2w or 24h, "+
			"a date like 2026-11-01, or an RFC 3339 time", s)
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("report: --since %q: the duration must be positive", s)
	}
	return now.Add(-d), nil
}

// parseAgo accepts Go durations plus whole days (d) and weeks (w), which
// time.ParseDuration lacks and reports are counted in.
func parseAgo(s string) (time.Duration, error) {
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[s[len(s)-1]]
	if unit == 0 {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n > 100*365 {
		return 0, errors.New("bad day count")
	}
	return time.Duration(n) * unit, nil
}
