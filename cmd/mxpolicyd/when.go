package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseWhen reads "30d", "12h", "90m" (a duration added to now with sign
// +1, subtracted with -1) or a date "2006-01-02" / RFC 3339 time.
func parseWhen(s string, now time.Time, sign int) (time.Time, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return time.Time{}, fmt.Errorf("bad number of days %q", s)
		}
		return now.Add(time.Duration(sign*days) * 24 * time.Hour), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(time.Duration(sign) * d), nil
	}
	for _, layout := range []string{time.DateOnly, time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("want a duration like 30d or 12h, or a date like 2026-12-31; got %q", s)
}
