package greylist_test

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
)

// A bounce (MAIL FROM:<>) is retried from another host of the same /24,
// each host with its own HELO name and the per-host HELO policy RFC 7208
// §2.3 recommends ("v=spf1 a -all"). README, Greylisting, "Client
// network": "a retry from another host of the same network matches";
// pool_aware is there so that a pool's retry matches more often, never
// less. With pool_aware the SPF check's HELO identity (the null sender's)
// becomes the client key ("spf:a.mx.sender.test"), one key per host, so
// the retry from the neighbour is a new triplet and the bounce is
// greylisted a second time. Without pool_aware it passes.
func TestNullSenderRetryFromNeighbourHost(t *testing.T) {
	srv := dnstest.New(t,
		"test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120",
		"a.mx.sender.test. 300 IN A 198.51.100.10",
		`a.mx.sender.test. 300 IN TXT "v=spf1 a -all"`,
		"b.mx.sender.test. 300 IN A 198.51.100.11",
		`b.mx.sender.test. 300 IN TXT "v=spf1 a -all"`,
	)
	r, err := resolver.New(resolver.Config{Server: srv.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, pool := range []bool{false, true} {
		scfg := spf.DefaultConfig()
		scfg.Receiver = "mx.local.test"
		sc, err := spf.New(scfg, r, spf.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := greylist.DefaultConfig()
		cfg.PoolAware = pool
		cfg.Hostname = "mx1.example.net"
		g, err := greylist.New(cfg, greylist.NewStore(openDB(t, filepath.Join(t.TempDir(), "g.db"))), greylist.Options{})
		if err != nil {
			t.Fatal(err)
		}
		now := start
		eng := policy.NewEngine(policy.Options{Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)},
			[]policy.Step{{Check: sc, Timeout: 2 * time.Second}, {Check: g, Timeout: 2 * time.Second}})
		bounce := func(client, helo, instance string) *policy.Decision {
			req := &policy.Request{Request: "smtpd_access_policy", ProtocolState: "RCPT",
				ClientAddress: netip.MustParseAddr(client), ClientName: helo, HeloName: helo,
				Sender: "", Recipient: "bob@example.net", Instance: instance}
			return eng.Evaluate(context.Background(), req, policy.NewMessage(instance))
		}
		if d := bounce("198.51.100.10", "a.mx.sender.test", "i1"); !d.Action.IsDefer() {
			t.Fatalf("pool_aware=%v: first attempt of the bounce: %v (%s), want a deferral", pool, d.Action, d.Reason)
		}
		now = start.Add(5 * time.Minute)
		d := bounce("198.51.100.11", "b.mx.sender.test", "i2")
		if d.Action.IsDefer() {
			t.Errorf("pool_aware=%v: retry of the bounce from 198.51.100.11, same /24 as 198.51.100.10, "+
				"5 minutes later: %v (%s, spf %s %q); want it to pass", pool, d.Action, d.Reason, d.Facts.SPF, d.Facts.SPFDomain)
		}
	}
}

// With pool_aware a sender whose SPF passes keys by its domain, and one
// SPF could not check keys by network. When the check fails on one attempt
// only (the resolver timed out, or the domain's servers failed: RFC 7208
// §2.6.6 temperror), the first attempt and its retry would have different
// keys, and a legitimate sender would be greylisted a second time for a
// failure that was not its own. A failing attempt either times out, and
// on_error (DUNNO) answers for SPF, or meets a SERVFAIL, and SPF's
// temperror action defers it (DEFER_IF_PERMIT: greylisting still records
// the attempt, as a greylisting service after an SPF one would in
// Postfix, policy.AttemptRecorder). The message is retried 5 minutes later
// from the same address.
func TestRetryAfterSPFFailurePassesWithPoolAware(t *testing.T) {
	srv := dnstest.New(t,
		"test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120",
		`sender.test. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"`,
	)
	for _, tc := range []struct {
		name          string
		first, second string // how SPF fails on that attempt: "", "timeout" or "servfail"
	}{
		{"timeout then pass", "timeout", ""},
		{"pass then timeout", "", "timeout"},
		{"servfail then pass", "servfail", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := greylist.DefaultConfig()
			cfg.Hostname = "mx1.example.net"
			if !cfg.PoolAware {
				t.Fatal("pool_aware is off by default; this test is about it on")
			}
			g, err := greylist.New(cfg, greylist.NewStore(openDB(t, filepath.Join(t.TempDir(), "g.db"))), greylist.Options{})
			if err != nil {
				t.Fatal(err)
			}
			now := start
			// Each attempt with a resolver and an SPF check of its own, so
			// that neither answers the retry from its cache.
			send := func(instance, fail string) *policy.Decision {
				switch fail {
				case "timeout":
					gate := make(chan struct{})
					srv.SetGate("sender.test", gate)
					defer func() { close(gate); srv.SetGate("sender.test", nil) }()
				case "servfail":
					srv.SetRcode("sender.test", dns.RcodeServerFailure)
					defer srv.SetRcode("sender.test", dns.RcodeSuccess)
				}
				r, err := resolver.New(resolver.Config{Server: srv.Addr(), Timeout: 2 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				scfg := spf.DefaultConfig()
				scfg.Receiver = "mx.local.test"
				sc, err := spf.New(scfg, r, spf.Options{})
				if err != nil {
					t.Fatal(err)
				}
				eng := policy.NewEngine(policy.Options{Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)},
					[]policy.Step{{Check: sc, Timeout: 300 * time.Millisecond}, {Check: g, Timeout: 2 * time.Second}})
				req := &policy.Request{Request: "smtpd_access_policy", ProtocolState: "RCPT",
					ClientAddress: netip.MustParseAddr("198.51.100.10"), ClientName: "a.mx.sender.test",
					HeloName: "a.mx.sender.test", Sender: "alice@sender.test", Recipient: "bob@example.net",
					Instance: instance}
				d := eng.Evaluate(context.Background(), req, policy.NewMessage(instance))
				if timedOut := len(d.Errors) > 0; timedOut != (fail == "timeout") {
					t.Fatalf("attempt %s: SPF errors %+v, want a timeout: %v", instance, d.Errors, fail == "timeout")
				}
				if fail == "servfail" && d.Facts.SPF != policy.SPFTempError {
					t.Fatalf("attempt %s: SPF %q, want temperror", instance, d.Facts.SPF)
				}
				return d
			}
			if d := send("i1", tc.first); !d.Action.IsDefer() {
				t.Fatalf("first attempt: %v (%s), want a deferral", d.Action, d.Reason)
			}
			now = start.Add(5 * time.Minute)
			if d := send("i2", tc.second); d.Action.IsDefer() {
				t.Errorf("retry 5 minutes later from the same address: %v (%s, spf %q %q); want it to pass",
					d.Action, d.Reason, d.Facts.SPF, d.Facts.SPFDomain)
			}
		})
	}
}
