package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Reset refuses a rule the config does not name and a key without a
// counter with sentinels a command can classify, and leaves the key out
// of the text: it may be anything, and the caller quotes it.
func TestResetRefusals(t *testing.T) {
	cfg, err := load(t, "rules: [{name: per-user, key: [sasl_username], limit: 3/1h}, {name: per-net, key: [client_network], limit: 9/1h}]")
	if err != nil {
		t.Fatal(err)
	}
	key := "alice\x1b[2J" + strings.Repeat("k", 1000)
	cases := []struct {
		cfg        Config
		rule, want string
		is         error
	}{
		{cfg, "nosuch", "ratelimit: no such rule in the config (rules: per-user, per-net)", ErrNoRule},
		{Config{}, "per-user", "ratelimit: no such rule in the config (ratelimit.rules is empty)", ErrNoRule},
		{cfg, "per-user", "ratelimit: no counter for this key under this rule", ErrNoCounter},
	}
	for _, c := range cases {
		_, err := Reset(context.Background(), newMem(), c.cfg, c.rule, key)
		if !errors.Is(err, c.is) || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "alice") {
			t.Errorf("Reset(%s) = %v, want %v starting %q, without the key", c.rule, err, c.is, c.want)
		}
	}
}
