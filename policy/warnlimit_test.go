package policy

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
)

func TestWarnLimiter(t *testing.T) {
	type step struct {
		at             time.Duration // since the start
		kind           warnKind
		ok             bool
		wantSuppressed int
	}
	tests := map[string][]step{
		"first line passes": {{0, warnBusy, true, 0}},
		"burst is held back and counted": {
			{0, warnBusy, true, 0},
			{time.Second, warnBusy, false, 0},
			{9 * time.Second, warnBusy, false, 0},
			{10 * time.Second, warnBusy, true, 2},
			{11 * time.Second, warnBusy, false, 0},
			{25 * time.Second, warnBusy, true, 1},
		},
		"kinds are limited apart": {
			{0, warnBusy, true, 0},
			{0, warnEvicted, true, 0},
			{time.Second, warnBusy, false, 0},
			{time.Second, warnNotAllowed, true, 0},
			{time.Second, warnBadRequest, true, 0},
			{10 * time.Second, warnEvicted, true, 0},
			{10 * time.Second, warnBusy, true, 1},
		},
		"after a quiet spell, the held-back count is told once": {
			{0, warnSilent, true, 0},
			{time.Second, warnSilent, false, 0},
			{2 * time.Second, warnSilent, false, 0},
			{time.Hour, warnSilent, true, 2},
			{2 * time.Hour, warnSilent, true, 0},
		},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			start := time.Unix(1e9, 0)
			clk := clocktest.New(start)
			l := newWarnLimiter(10*time.Second, clk.Now)
			for i, s := range steps {
				clk.Set(start.Add(s.at))
				ok, n := l.allow(s.kind)
				if ok != s.ok || n != s.wantSuppressed {
					t.Errorf("step %d: allow = %v, %d; want %v, %d", i, ok, n, s.ok, s.wantSuppressed)
				}
			}
		})
	}
}
