package dnsbl_test

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// t0 is where the injected cache clocks start.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// zones is the DNS data most tests share. Names follow RFC 5782: the
// query for 192.0.2.10 in zen.test is 10.2.0.192.zen.test.
var zones = []string{
	"test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120",
	// zen.test: Spamhaus-like codes.
	"2.0.0.127.zen.test. 300 IN A 127.0.0.2",
	"2.0.0.127.zen.test. 300 IN TXT \"https://www.spamhaus.org/query/ip/127.0.0.2\"",
	"10.2.0.192.zen.test. 300 IN A 127.0.0.4",
	"11.2.0.192.zen.test. 300 IN A 127.0.0.10",
	"12.2.0.192.zen.test. 300 IN A 127.0.0.2",
	"12.2.0.192.zen.test. 300 IN A 127.0.0.10",
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test. 300 IN A 127.0.0.3",
	"252.2.0.192.zen.test. 300 IN A 127.255.255.252",
	"254.2.0.192.zen.test. 300 IN A 127.255.255.254",
	"255.2.0.192.zen.test. 300 IN A 127.255.255.255",
	"77.2.0.192.zen.test. 300 IN A 10.0.0.1",
	"78.2.0.192.zen.test. 300 IN A 127.0.0.1",
	"5.2.0.192.zen.test. 5 IN A 127.0.0.2", // TTL under min_ttl
	// spamcop.test: a second blocklist.
	"10.2.0.192.spamcop.test. 300 IN A 127.0.0.2",
	// wl.test: dnswl.org-like allowlist.
	"20.2.0.192.wl.test. 300 IN A 127.0.5.2",
	"10.2.0.192.wl.test. 300 IN A 127.0.5.3",
	"99.2.0.192.wl.test. 300 IN A 127.0.5.255",
	// dbl.test: a domain list.
	"bad.example.dbl.test. 300 IN A 127.0.1.2",
	"bad.example.dbl.test. 300 IN TXT \"https://www.spamhaus.org/query/domain/bad.example\"",
	"badhelo.example.dbl.test. 300 IN A 127.0.1.4",
	"badrdns.example.dbl.test. 300 IN A 127.0.1.5",
	"ipquery.example.dbl.test. 300 IN A 127.0.1.255",
}

// observer counts what metrics would see.
type observer struct {
	mu      sync.Mutex
	queries map[string]int
	cached  map[string]int
	errors  map[string]int
	paused  map[string]int
	health  map[string]bool
	probed  chan map[string]bool // when set, receives each probe's verdicts
}

func newObserver() *observer {
	return &observer{queries: map[string]int{}, cached: map[string]int{}, errors: map[string]int{}, paused: map[string]int{}}
}

func (o *observer) DNSQuery(list string, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.errors[list]++
	} else {
		o.queries[list]++
	}
}

func (o *observer) DNSCacheHit(list string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cached[list]++
}

func (o *observer) DNSLists([]string) {}

func (o *observer) DNSPaused(list string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.paused[list]++
}

func (o *observer) DNSListHealth(healthy map[string]bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.health = healthy
	if o.probed != nil {
		o.probed <- healthy
	}
}

func (o *observer) get(m map[string]int, list string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[list]
}

type fixture struct {
	srv   *dnstest.Server
	clock *clocktest.Clock
	obs   *observer
	logs  *logtest.Buffer
	check *dnsbl.Checker
}

// newFixture starts the DNS server and a checker for cfg; set fills in
// the lists and any other non-default keys.
func newFixture(t testing.TB, set func(*dnsbl.Config)) *fixture {
	t.Helper()
	f := &fixture{srv: dnstest.New(t, zones...), clock: clocktest.New(t0), obs: newObserver(), logs: &logtest.Buffer{}}
	r, err := resolver.New(resolver.Config{Server: f.srv.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := dnsbl.DefaultConfig()
	set(&cfg)
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.check, err = dnsbl.New(cfg, r, dnsbl.Options{Logger: log, Now: f.clock.Now, Observer: f.obs})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// req is the RCPT request of a client; empty names are left out.
func req(client, sender, helo, clientName string) *policy.State {
	r := &policy.Request{ProtocolState: "RCPT", Sender: sender, HeloName: helo,
		ClientName: clientName, Recipient: "rcpt@local.example", Instance: "1.2.3"}
	if client != "" {
		r.ClientAddress = netip.MustParseAddr(client)
	}
	if r.ClientName == "" {
		r.ClientName = "unknown"
	}
	return &policy.State{Req: r, Msg: policy.NewMessage(r.Instance)}
}

func (f *fixture) run(t *testing.T, st *policy.State) policy.Result {
	t.Helper()
	res, err := f.check.Check(context.Background(), st)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res
}
