package dnsbl_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// selfCheckZones: good.test keeps RFC 5782 §5; wild.test answers every
// name as listed, as a list shut down with a wildcard record does;
// pubres.test answers its test point as Spamhaus answers queries through a
// public resolver; priv.test is a private list without test points; the
// domain lists dbl.test and wilddbl.test are the same for names.
var selfCheckZones = []string{
	"test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120",
	"2.0.0.127.good.test. 300 IN A 127.0.0.2",
	"10.2.0.192.good.test. 300 IN A 127.0.0.4",
	"*.wild.test. 300 IN A 127.0.0.2",
	"2.0.0.127.pubres.test. 300 IN A 127.255.255.254",
	"10.2.0.192.priv.test. 300 IN A 127.0.0.2",
	"test.dbl.test. 300 IN A 127.0.1.2",
	"bad.example.dbl.test. 300 IN A 127.0.1.2",
	"*.wilddbl.test. 300 IN A 127.0.1.2",
}

// switchable is an Exchanger whose resolver can be taken down: then every
// query gets no response, as when our own unbound is stopped.
type switchable struct {
	up, down dnsbl.Exchanger
	isDown   atomic.Bool
}

func (s *switchable) Exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if s.isDown.Load() {
		return s.down.Exchange(ctx, name, qtype)
	}
	return s.up.Exchange(ctx, name, qtype)
}

// probeRig is a checker whose self-check runs on a ticker the test drives;
// each probe's report to the observer tells the test it is done, so no
// test sleeps.
type probeRig struct {
	srv   *dnstest.Server
	ex    *switchable
	obs   *observer
	logs  *logtest.Buffer
	ticks chan time.Time
	check *dnsbl.Checker
	eng   *policy.Engine
}

func newProbeRig(t *testing.T, set func(*dnsbl.Config)) *probeRig {
	t.Helper()
	rig := &probeRig{srv: dnstest.New(t, selfCheckZones...), obs: newObserver(), logs: &logtest.Buffer{},
		ticks: make(chan time.Time)}
	rig.obs.probed = make(chan map[string]bool, 16)
	r, err := resolver.New(resolver.Config{Server: rig.srv.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rig.ex = &switchable{up: r, down: deadResolver(t)}
	cfg := dnsbl.DefaultConfig()
	set(&cfg)
	log := slog.New(slog.NewTextHandler(rig.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tick := func(time.Duration) (<-chan time.Time, func()) { return rig.ticks, func() {} }
	rig.check, err = dnsbl.New(cfg, rig.ex, dnsbl.Options{Logger: log, Now: clocktest.New(t0).Now, Observer: rig.obs, Tick: tick})
	if err != nil {
		t.Fatal(err)
	}
	rig.eng = policy.NewEngine(policy.Options{Logger: slog.New(slog.DiscardHandler)},
		[]policy.Step{{Check: rig.check, Timeout: 1500 * time.Millisecond, OnError: policy.DunnoAction}})
	return rig
}

// start runs the self-check and waits for its first probe.
func (rig *probeRig) start(t *testing.T) map[string]bool {
	t.Helper()
	stop := rig.check.StartSelfCheck(context.Background())
	t.Cleanup(stop)
	return rig.probed(t)
}

// tick makes the next probe happen and waits for it.
func (rig *probeRig) tick(t *testing.T) map[string]bool {
	t.Helper()
	rig.ticks <- time.Now()
	return rig.probed(t)
}

func (rig *probeRig) probed(t *testing.T) map[string]bool {
	t.Helper()
	select {
	case v := <-rig.obs.probed:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no probe reported within 10s")
		return nil
	}
}

// decide runs a request through the engine, as the daemon does.
func (rig *probeRig) decide(t *testing.T, client, sender string) *policy.Decision {
	t.Helper()
	st := req(client, sender, "", "")
	return rig.eng.Evaluate(context.Background(), st.Req, st.Msg)
}

func (rig *probeRig) state(t *testing.T, list string) dnsbl.ListHealth {
	t.Helper()
	for _, h := range rig.check.Health() {
		if h.List == list {
			return h
		}
	}
	t.Fatalf("no list %s in %v", list, rig.check.Health())
	return dnsbl.ListHealth{}
}

// A list that lists everyone is disabled by the first probe, so nobody is
// rejected; once its records are fixed the next probe brings it back and
// it rejects listed clients again. Each change is logged once.
func TestSelfCheckDisablesWildcardList(t *testing.T) {
	rig := newProbeRig(t, lists("wild.test=127.0.0.[2..11]"))
	if d := rig.decide(t, "192.0.2.1", ""); !d.Action.IsReject() {
		t.Fatalf("before any probe the list is used: got %v, want a reject from the wildcard", d.Action)
	}
	if got := rig.start(t); got["wild.test"] {
		t.Fatalf("first probe: verdicts %v, want wild.test unhealthy", got)
	}
	h := rig.state(t, "wild.test")
	if h.State != dnsbl.Unhealthy || !strings.Contains(h.Why, "127.0.0.2 for 127.0.0.1") {
		t.Errorf("state %v, want unhealthy naming the answer for 127.0.0.1", h)
	}
	before := rig.srv.Queries("1.2.0.192.wild.test", dns.TypeA)
	// 192.0.2.1 first: the plan kept for it from before the probe must be
	// made again without the list (plans.go).
	for _, client := range []string{"192.0.2.1", "192.0.2.10", "198.51.100.7"} {
		d := rig.decide(t, client, "")
		if !d.Action.IsDunno() || d.Facts.DNSScore != 0 || len(d.Errors) != 0 {
			t.Errorf("%s through an unhealthy list: %v (score %v, errors %v), want DUNNO, not listed",
				client, d.Action, d.Facts.DNSScore, d.Errors)
		}
	}
	if n := rig.srv.Queries("1.2.0.192.wild.test", dns.TypeA); n != before {
		t.Errorf("an unhealthy list was still asked (%d queries, %d before)", n, before)
	}
	rig.tick(t) // still broken: no second warning
	if n := strings.Count(rig.logs.String(), "list failed its self-check"); n != 1 {
		t.Errorf("logged the failure %d times, want once:\n%s", n, rig.logs)
	}

	rig.srv.Remove("*.wild.test")
	if err := rig.srv.Add("2.0.0.127.wild.test. 300 IN A 127.0.0.2", "10.2.0.192.wild.test. 300 IN A 127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if got := rig.tick(t); !got["wild.test"] {
		t.Fatalf("probe after the fix: verdicts %v, want wild.test healthy", got)
	}
	if d := rig.decide(t, "192.0.2.10", ""); !d.Action.IsReject() {
		t.Errorf("listed client after recovery: %v, want a reject", d.Action)
	}
	// 192.0.2.1 was cached as listed before the first probe; the cache
	// went with the failure, so the fixed list is asked again.
	if d := rig.decide(t, "192.0.2.1", ""); d.Action.IsReject() {
		t.Errorf("client listed only by the wildcard, cached before the probe: %v, want DUNNO", d.Action)
	}
	logs := rig.logs.String()
	if n := strings.Count(logs, "passes its self-check again"); n != 1 {
		t.Errorf("logged the recovery %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, `answer="answered 127.0.0.2 for 127.0.0.1`) {
		t.Errorf("the failure log does not give the answer:\n%s", logs)
	}
}

// An allowlist that lists everyone is ignored too: it would exempt anyone.
func TestSelfCheckIgnoresWildcardAllowlist(t *testing.T) {
	rig := newProbeRig(t, lists("good.test", "wild.test*-5"))
	rig.start(t)
	d := rig.decide(t, "192.0.2.10", "")
	if !d.Action.IsReject() || d.Facts.DNSAllow {
		t.Errorf("listed client beside an allowlist listing everyone: %v (allow %v), want a reject",
			d.Action, d.Facts.DNSAllow)
	}
}

func TestSelfCheckVerdicts(t *testing.T) {
	tests := []struct {
		site   string
		kind   dnsbl.Kind
		state  dnsbl.HealthState
		reason string
	}{
		{"good.test=127.0.0.[2..11]", "", dnsbl.Healthy, ""},
		{"good.test=127.0.0.[10;11]", "", dnsbl.Healthy, ""}, // a test entry outside the filter still passes
		{"wild.test", "", dnsbl.Unhealthy, "answered 127.0.0.2 for 127.0.0.1"},
		{"pubres.test", "", dnsbl.Unhealthy, "answered 127.255.255.254 for 127.0.0.2: query through a public or open resolver"},
		{"priv.test", "", dnsbl.Unhealthy, "no entry for 127.0.0.2"},
		{"dbl.test", dnsbl.KindDomain, dnsbl.Healthy, ""},
		{"wilddbl.test", dnsbl.KindDomain, dnsbl.Unhealthy, "answered 127.0.1.2 for invalid"},
		{"good.test", dnsbl.KindDomain, dnsbl.Unhealthy, "no entry for test"},
	}
	for _, tt := range tests {
		rig := newProbeRig(t, func(c *dnsbl.Config) {
			c.Lists = []dnsbl.List{{Site: tt.site, Kind: tt.kind}}
		})
		h := rig.check.Probe(context.Background())[0]
		if h.State != tt.state || !strings.HasPrefix(h.Why, tt.reason) {
			t.Errorf("%s (%s): %v, want %s %q", tt.site, tt.kind, h, tt.state, tt.reason)
		}
	}
}

// A healthy list stays healthy and keeps rejecting, probe after probe.
func TestSelfCheckHealthyListStays(t *testing.T) {
	rig := newProbeRig(t, lists("good.test=127.0.0.[2..11]"))
	for i := range 3 {
		var got map[string]bool
		if i == 0 {
			got = rig.start(t)
		} else {
			got = rig.tick(t)
		}
		if !got["good.test"] || len(got) != 1 {
			t.Fatalf("probe %d: verdicts %v, want good.test healthy", i, got)
		}
		if d := rig.decide(t, "192.0.2.10", ""); !d.Action.IsReject() {
			t.Fatalf("probe %d: listed client got %v, want a reject", i, d.Action)
		}
	}
	if n := rig.srv.Queries("2.0.0.127.good.test", dns.TypeA); n != 3 {
		t.Errorf("test point asked %d times in 3 probes, want 3: the probe must not be cached", n)
	}
	if strings.Contains(rig.logs.String(), "level=WARN") {
		t.Errorf("a healthy list logged a warning:\n%s", rig.logs)
	}
}

// A list with self_check: false is never probed and always used.
func TestSelfCheckOptOut(t *testing.T) {
	off := false
	rig := newProbeRig(t, func(c *dnsbl.Config) {
		c.Lists = []dnsbl.List{{Site: "priv.test", SelfCheck: &off}, {Site: "good.test"}}
	})
	if got := rig.start(t); len(got) != 1 || !got["good.test"] {
		t.Errorf("verdicts %v, want good.test alone", got)
	}
	rig.tick(t)
	for _, n := range []string{"2.0.0.127.priv.test", "1.0.0.127.priv.test"} {
		if q := rig.srv.Queries(n, dns.TypeA); q != 0 {
			t.Errorf("%s asked %d times: an opted-out list was probed", n, q)
		}
	}
	if h := rig.state(t, "priv.test"); h.State != dnsbl.NotChecked || h.Why != "self_check: false" {
		t.Errorf("opted-out list: %v", h)
	}
	if d := rig.decide(t, "192.0.2.10", ""); !d.Action.IsReject() || !strings.Contains(d.Reason, "priv.test") {
		t.Errorf("client on the opted-out list: %v (%s), want listed by priv.test", d.Action, d.Reason)
	}
}

// Our own resolver down during a probe says nothing about the lists: each
// keeps the state it had, healthy or not.
func TestSelfCheckResolverDownKeepsState(t *testing.T) {
	rig := newProbeRig(t, lists("good.test", "wild.test"))
	if got := rig.start(t); !got["good.test"] || got["wild.test"] {
		t.Fatalf("first probe: %v", got)
	}
	rig.ex.isDown.Store(true)
	if got := rig.tick(t); !got["good.test"] || got["wild.test"] || len(got) != 2 {
		t.Errorf("probe with the resolver down: verdicts %v, want the previous ones", got)
	}
	if h := rig.state(t, "wild.test"); h.State != dnsbl.Unhealthy {
		t.Errorf("wild.test after a failed probe: %v, want still unhealthy", h)
	}
	if h := rig.state(t, "good.test"); h.State != dnsbl.Healthy {
		t.Errorf("good.test after a failed probe: %v, want still healthy", h)
	}
	if n := strings.Count(rig.logs.String(), "list failed its self-check"); n != 1 {
		t.Errorf("failure logged %d times, want once", n)
	}
}

// Before any conclusive probe the list is used and shown as unknown, with
// the probe's error.
func TestSelfCheckUnknownUntilAnswered(t *testing.T) {
	rig := newProbeRig(t, lists("good.test"))
	rig.ex.isDown.Store(true)
	if got := rig.start(t); len(got) != 0 {
		t.Errorf("verdicts %v with no answer, want none", got)
	}
	if h := rig.state(t, "good.test"); h.State != dnsbl.Unknown || h.Why == "" {
		t.Errorf("state %v, want unknown with the error", h)
	}
	rig.ex.isDown.Store(false)
	if d := rig.decide(t, "192.0.2.10", ""); !d.Action.IsReject() {
		t.Errorf("a list not yet judged: %v, want it used", d.Action)
	}
}

func TestSelfCheckOffStartsNothing(t *testing.T) {
	rig := newProbeRig(t, func(c *dnsbl.Config) {
		lists("good.test")(c)
		c.SelfCheckInterval = 0
	})
	rig.check.StartSelfCheck(context.Background())() // stop waits for whatever started
	select {
	case v := <-rig.obs.probed:
		t.Errorf("self_check_interval 0 reported a probe: %v", v)
	default:
	}
	if n := rig.srv.Queries("2.0.0.127.good.test", dns.TypeA); n != 0 {
		t.Errorf("self_check_interval 0 probed %d times", n)
	}
	if h := rig.state(t, "good.test"); h.State != dnsbl.NotChecked {
		t.Errorf("state %v, want not checked", h)
	}
}

// The DQS key in a zone never reaches the state, the logs or the errors.
func TestSelfCheckHidesKey(t *testing.T) {
	rig := newProbeRig(t, lists("secretkey.zen.dq.spamhaus.net"))
	rig.ex.isDown.Store(true)
	h := rig.check.Probe(context.Background())[0]
	if h.List != "zen.dq.spamhaus.net" || strings.Contains(h.String()+rig.logs.String(), "secretkey") {
		t.Errorf("key leaked: %v\n%s", h, rig.logs)
	}
}

// exploding panics on every query: a bug below the self-check.
type exploding struct{}

func (exploding) Exchange(context.Context, string, uint16) (*dns.Msg, error) { panic("bug") }

func TestSelfCheckPanicIsContained(t *testing.T) {
	cfg := dnsbl.DefaultConfig()
	lists("good.test")(&cfg)
	c, err := dnsbl.New(cfg, exploding{}, dnsbl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Probe(context.Background())[0]; h.State != dnsbl.Unknown {
		t.Errorf("state after a panicking probe: %v, want unknown", h)
	}
}

func TestSelfCheckConfig(t *testing.T) {
	off, on := false, true
	for _, tt := range []struct {
		set  func(*dnsbl.Config)
		want string
	}{
		{func(c *dnsbl.Config) { c.SelfCheckInterval = time.Second }, "dnsbl.self_check_interval"},
		{func(c *dnsbl.Config) {
			c.Lists = []dnsbl.List{{Site: "zen.test=127.0.0.2"}, {Site: "zen.test=127.0.0.4", SelfCheck: &off}}
		}, "dnsbl.lists[1].self_check"},
	} {
		cfg := dnsbl.DefaultConfig()
		tt.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want one naming %s", err, tt.want)
		}
	}
	cfg := dnsbl.DefaultConfig()
	cfg.Lists = []dnsbl.List{{Site: "zen.test=127.0.0.2", SelfCheck: &on}, {Site: "zen.test=127.0.0.4"}}
	cfg.SelfCheckInterval = 0
	if err := cfg.Validate(); err != nil {
		t.Errorf("explicit and default self_check agree, and 0 turns it off: %v", err)
	}
}
