package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
)

// The table's defaults load, fit the default request_timeout, and accept
// the shipped example configuration.
func TestCheckTableLoads(t *testing.T) {
	for _, path := range []string{"", "../../contrib/config/mxpolicyd.example.yaml"} {
		if _, err := config.Load(path, checkDefaults(), nil); err != nil {
			t.Errorf("%q: %v", path, err)
		}
	}
}

// The wiring builds the table's checks in the table's order, each under
// the name its row gives, and leaves out a disabled one.
func TestStepsFollowTheTable(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Load("", checkDefaults(), func(c *config.Config) {
		c.DNSBL.Lists = []dnsbl.List{{Site: "zen.example.test"}}
		c.RateLimit.Rules = []ratelimit.Rule{{Name: "per-user", Key: []ratelimit.Part{ratelimit.PartSASLUsername},
			Limit: ratelimit.Limit{N: 300, Per: time.Hour}}}
		c.DNS.Server = "127.0.0.1:1"
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := db.Open(ctx, filepath.Join(t.TempDir(), "mx.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := applyMigrations(ctx, store, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	w := newWiring(ctx, cfg, slog.New(slog.DiscardHandler), store, nil, false)
	defer w.close()
	var want []string
	for _, c := range checkTable() {
		want = append(want, c.name)
	}
	if got := stepNames(t, w, cfg); !slices.Equal(got, want) {
		t.Fatalf("steps %v, want the table's %v", got, want)
	}
	off := false
	s := cfg.Checks[want[2]]
	s.Enabled = &off
	cfg.Checks[want[2]] = s
	if got := stepNames(t, w, cfg); !slices.Equal(got, slices.Delete(slices.Clone(want), 2, 3)) {
		t.Fatalf("with %s disabled: steps %v", want[2], got)
	}
}

func stepNames(t *testing.T, w *wiring, cfg *config.Config) []string {
	t.Helper()
	steps, err := w.steps(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Check.Name())
		if s.Timeout != cfg.Checks[s.Check.Name()].Timeout {
			t.Errorf("%s: timeout %s, want its checks entry's", s.Check.Name(), s.Timeout)
		}
	}
	return names
}
