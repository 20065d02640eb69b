// Package when reads the instants operators type on the command line:
// "7d", "2w", "36h", "1h30m" relative to now, a date, or an RFC 3339 time.
package when

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is returned for text that is none of the accepted forms.
var ErrSyntax = errors.New("want a duration like 7d, 2w or 24h, a date like 2026-11-01, or an RFC 3339 time")

// Parse returns now plus sign times a duration ("30d"; sign +1 for an
// expiry, -1 for "since"), or a date (its midnight in loc) or RFC 3339
// instant as given. The duration must be positive.
func Parse(s string, now time.Time, sign int, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, ErrSyntax
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := Duration(s)
	if err != nil {
		return time.Time{}, ErrSyntax
	}
	if d <= 0 {
		return time.Time{}, errors.New("the duration must be positive")
	}
	return now.Add(time.Duration(sign) * d), nil
}

// Duration accepts Go durations plus whole days (d) and weeks (w), which
// time.ParseDuration lacks and operators count in.
func Duration(s string) (time.Duration, error) {
	if s == "" {
		return 0, ErrSyntax
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[s[len(s)-1]]
	if unit == 0 {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	// At most a hundred years, in either unit: as many weeks would not
	// fit a time.Duration (about 292 years) and would wrap around.
	if err != nil || n < 0 || time.Duration(n) > 100*365*24*time.Hour/unit {
		return 0, ErrSyntax
	}
	return time.Duration(n) * unit, nil
}
