package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/metrics"
)

// listsServer serves DNS lists for the self-check, plus extra records:
// good.test lists its RFC 5782 test point 127.0.0.2 only, as a healthy
// list does; wild.test lists every address, as a list gone wrong does.
func listsServer(t *testing.T, extra ...string) *dnstest.Server {
	return dnstest.New(t, append([]string{
		"test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120",
		"2.0.0.127.good.test. 300 IN A 127.0.0.2",
		"*.wild.test. 300 IN A 127.0.0.2",
	}, extra...)...)
}

// The wiring runs the self-check of the dnsbl check in use: a reload
// stops the old check's probe and starts the new one's, /readyz's lines
// follow, and close stops the last probe.
func TestDNSBLSelfCheckFollowsReload(t *testing.T) {
	srv := listsServer(t)
	load := func(sites ...string) *config.Config {
		cfg, err := config.Load("", checkDefaults(), func(c *config.Config) {
			c.DNS.Server = srv.Addr()
			for _, s := range sites {
				c.DNSBL.Lists = append(c.DNSBL.Lists, dnsbl.List{Site: s})
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ctx := context.Background()
	store, err := db.Open(ctx, filepath.Join(t.TempDir(), "mx.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := load("wild.test")
	w := newWiring(ctx, cfg, slog.New(slog.DiscardHandler), store, metrics.New(), false)
	// Each probe's ticker never fires; its stop, deferred by the probe's
	// goroutine, says the probe ended.
	var stopped []bool
	w.dnsblTick = func(time.Duration) (<-chan time.Time, func()) {
		i := len(stopped)
		stopped = append(stopped, false)
		return nil, func() { stopped[i] = true }
	}
	if _, err := w.steps(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, w, []string{"dnsbl wild.test: unhealthy: answered 127.0.0.2 for 127.0.0.1, which RFC 5782 §5 says no list may contain"})

	cfg = load("good.test")
	if _, err := w.steps(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stopped, []bool{true, false}) {
		t.Fatalf("after the reload, probes stopped %v, want the old one only", stopped)
	}
	waitHealth(t, w, []string{"dnsbl good.test: healthy"})
	w.close()
	if !slices.Equal(stopped, []bool{true, true}) {
		t.Errorf("after close, probes stopped %v, want both", stopped)
	}
	if n := srv.Queries("2.0.0.127.wild.test", dns.TypeA); n != 1 {
		t.Errorf("wild.test probed %d times, want once, at start", n)
	}
}

// waitHealth waits for the first probe of the running check, which starts
// at once on its own goroutine.
func waitHealth(t *testing.T, w *wiring, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := w.dnsbl.health()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz lines %q, want %q", strings.Join(got, "|"), strings.Join(want, "|"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
