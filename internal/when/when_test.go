package when

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	good := []struct {
		in   string
		sign int
		want time.Time
	}{
		{"7d", -1, now.Add(-7 * 24 * time.Hour)},
		{"2w", +1, now.Add(14 * 24 * time.Hour)},
		{"5214w", +1, now.Add(5214 * 7 * 24 * time.Hour)}, // about 100 years
		{"36h", -1, now.Add(-36 * time.Hour)},
		{"1h30m", +1, now.Add(90 * time.Minute)},
		{" 2026-11-01 ", -1, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-11-01T08:00:00Z", -1, time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)},
	}
	for _, g := range good {
		got, err := Parse(g.in, now, g.sign, time.UTC)
		if err != nil || !got.Equal(g.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", g.in, got, err, g.want)
		}
	}
	// 20000w and 36500w would not fit a time.Duration: they wrapped
	// around, to a negative or a wrong duration.
	for _, bad := range []string{"", "soon", "d", "-3d", "0h", "-1h", "2026-13-01", "99999999d", "5300w", "20000w", "36500w"} {
		if _, err := Parse(bad, now, -1, time.UTC); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
