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

// Reset's refusals of what the admin named; nothing was changed. Their
// text does not repeat the rule or key given, which may be anything: the
// caller names them, quoted as it quotes input.
var (
	ErrNoRule    = errors.New("no such rule in the config")
	ErrNoCounter = errors.New("no counter for this key under this rule")
)

// Reset clears one key of one rule, so it starts again with its whole
// burst and no networks. A rule the config does not name, or a key with
// nothing to clear, is an error and changes nothing: a typo must not look
// like success.
func Reset(ctx context.Context, s Store, cfg Config, rule, key string) (int64, error) {
	if cfg.rule(rule) == nil {
		return 0, fmt.Errorf("ratelimit: %w (%s)", ErrNoRule, cfg.ruleNames())
	}
	n, err := s.Reset(ctx, rule, key)
	if err == nil && n == 0 {
		err = fmt.Errorf("ratelimit: %w (mxpolicyd ratelimit list --min 0 shows the keys)", ErrNoCounter)
	}
	return n, err
}

// ruleNames lists the configured rules for an error message.
func (c Config) ruleNames() string {
	if len(c.Rules) == 0 {
		return "ratelimit.rules is empty"
	}
	names := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		names[i] = r.Name
	}
	return "rules: " + strings.Join(names, ", ")
}
