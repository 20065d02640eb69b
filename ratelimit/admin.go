package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Entry is one key's state under one rule, for "mxpolicyd ratelimit list".
type Entry struct {
	Rule string `json:"rule"`
	Kind Kind   `json:"kind"`
	Key  string `json:"key"`
	// Used is how much of the limit the key has spent, in percent: of the
	// burst for a rate rule, of N networks for distinct_networks. Over
	// 100 the key is being refused. -1: the rule is no longer configured.
	Used float64 `json:"used_percent"`
	// Rest is when a rate key is back to its whole burst.
	Rest time.Time `json:"rest,omitzero"`
	// Networks are the client networks a distinct_networks key was seen
	// from within the window.
	Networks []string `json:"networks,omitempty"`
}

// Usage turns the store's live rows into one entry per rule and key,
// those at least minPercent used, most used first.
func Usage(rows []Counter, cfg Config, now time.Time, minPercent float64) []Entry {
	byKey := map[[2]string]*Entry{}
	var out []*Entry
	for _, c := range rows {
		k := [2]string{c.Rule, c.Key}
		e := byKey[k]
		if e == nil {
			e = &Entry{Rule: c.Rule, Key: c.Key, Kind: KindRate}
			byKey[k] = e
			out = append(out, e)
		}
		if c.Network != "" {
			e.Kind, e.Networks = KindDistinctNetworks, append(e.Networks, c.Network)
			continue
		}
		e.Rest = c.TAT
		if c.Tau > 0 {
			e.Used = 100 * float64(c.TAT.Sub(now)) / float64(c.Tau)
		}
	}
	var res []Entry
	for _, e := range out {
		r := cfg.rule(e.Rule)
		switch {
		case r == nil:
			e.Used = -1
		case e.Kind == KindDistinctNetworks:
			e.Used = 100 * float64(len(e.Networks)) / float64(r.Limit.N)
		}
		if e.Used >= minPercent || e.Used < 0 {
			res = append(res, *e)
		}
	}
	slices.SortStableFunc(res, func(a, b Entry) int {
		if a.Used != b.Used {
			return int(b.Used*1000) - int(a.Used*1000)
		}
		return strings.Compare(a.Rule+"\x00"+a.Key, b.Rule+"\x00"+b.Key)
	})
	return res
}

func (c Config) rule(name string) *Rule {
	for i := range c.Rules {
		if c.Rules[i].Name == name {
			return &c.Rules[i]
		}
	}
	return nil
}

// ErrNoCounter is Reset's error for a key that has no counter.
var ErrNoCounter = errors.New("no counter")

// Reset clears one key of one rule, so it starts again with its whole
// burst and no networks. A rule the config does not name, or a key with
// nothing to clear, is an error and changes nothing: a typo must not look
// like success.
func Reset(ctx context.Context, s Store, cfg Config, rule, key string) (int64, error) {
	if cfg.rule(rule) == nil {
		names := make([]string, len(cfg.Rules))
		for i, r := range cfg.Rules {
			names[i] = r.Name
		}
		return 0, fmt.Errorf("ratelimit: no rule %q in the config (rules: %s)", rule, strings.Join(names, ", "))
	}
	n, err := s.Reset(ctx, rule, key)
	if err == nil && n == 0 {
		err = fmt.Errorf("ratelimit: rule %s: %w for key %q (mxpolicyd ratelimit list --min 0 shows the keys)", rule, ErrNoCounter, key)
	}
	return n, err
}
