package ratelimit

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// GCRA on an injected clock: 60/1m with a burst of 3.
func TestConformBurstSteadyRecovery(t *testing.T) {
	r := Rule{Name: "r", Limit: Limit{N: 60, Per: time.Minute}, Burst: 3}
	c := r.cell("k", 1)
	var tat int64
	at := func(d time.Duration, want bool) {
		t.Helper()
		var ok bool
		tat, ok = conform(tat, t0.Add(d).UnixNano(), c)
		if ok != want {
			t.Fatalf("t0+%s: conform %v, want %v", d, ok, want)
		}
	}
	for range 3 {
		at(0, true) // the burst
	}
	at(0, false)
	at(999*time.Millisecond, false)
	at(time.Second, true) // one per second after it
	at(time.Second, false)
	at(2*time.Second, true)
	at(time.Minute, true) // rest: the burst is back
	at(time.Minute, true)
	at(time.Minute, true)
	at(time.Minute, false)
}

func TestCellRounding(t *testing.T) {
	r := Rule{Limit: Limit{N: 7, Per: time.Second}}
	c := r.cell("k", 3)
	if c.Inc != 428571428 || c.Tau != int64(time.Second) {
		t.Errorf("inc %d tau %d, want 428571428 and %d", c.Inc, c.Tau, int64(time.Second))
	}
}

// A key at rest may send its whole burst at once (README, "Rate limits"),
// and not one more, whatever per/N comes to in nanoseconds: 7/1h is
// 514285714285.71 ns, and an inc rounded up made the seventh of a burst
// of 7 over the limit by 2 ns.
func TestBurstAtRestIsWhole(t *testing.T) {
	for _, per := range []time.Duration{time.Second, 7 * time.Second, time.Minute, time.Hour, 24 * time.Hour,
		time.Hour + time.Nanosecond} {
		for n := int64(1); n <= 64; n++ {
			for _, burst := range []int64{0, 1, 2 * n} {
				r := Rule{Name: "r", Limit: Limit{N: n, Per: per}, Burst: burst}
				c, now := r.cell("k", 1), t0.UnixNano()
				tat := now
				for i := range r.burst() {
					var ok bool
					if tat, ok = conform(tat, now, c); !ok {
						t.Fatalf("%d/%s burst %d: message %d of the burst refused", n, per, r.burst(), i+1)
					}
				}
				if _, ok := conform(tat, now, c); ok {
					t.Fatalf("%d/%s burst %d: one past the burst allowed", n, per, r.burst())
				}
			}
		}
	}
}

func TestLimitText(t *testing.T) {
	var l Limit
	if err := l.UnmarshalText([]byte("300/1h")); err != nil || l != (Limit{300, time.Hour}) {
		t.Fatalf("300/1h: %v %v", l, err)
	}
	for _, bad := range []string{"300", "0/1h", "x/1h", "3/", "3/-1h", "3/h"} {
		if err := new(Limit).UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func load(t *testing.T, src string) (Config, error) {
	t.Helper()
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		"rules: [{name: a, key: [sasl_username]}]":                                              "ratelimit.rules[0] (a).limit",
		"rules: [{name: a, key: [nope], limit: 1/1h}]":                                          "ratelimit.rules[0] (a).key",
		"rules: [{name: 'a b', key: [sender], limit: 1/1h}]":                                    ".name",
		"rules: [{name: a, key: [sender], limit: 1/1h, count: mails}]":                          ".count",
		"rules: [{name: a, key: [sender], limit: 1/1h}, {name: a, key: [sender], limit: 1/1h}]": "rules[1] (a).name",
		"rules: [{name: a, key: [sender], limit: 1/1h, action: 'DEFER {nope}'}]":                "unknown placeholder",
		"rules: [{name: a, key: [sender], limit: 1/1h, action: DUNNO}]":                         "must defer, reject, hold",
		"rules: [{name: a, kind: distinct_networks, key: [client_network], limit: 3/24h}]":      "must not contain the client",
		"rules: [{name: a, key: [recipient_domain], count: bytes, limit: 1/1h}]":                ".key",
	}
	for src, want := range cases {
		_, err := load(t, src)
		if err == nil {
			t.Errorf("%s: accepted", src)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to name %q", src, err, want)
		}
	}
}

const example = `
rules:
  - name: user-msgs
    key: [sasl_username]
    limit: 3/1h
    burst: 2
    when: {authenticated: true}
  - name: user-rcpts
    key: [sasl_username]
    count: recipients
    limit: 100/1h
    action: observe
  - name: user-bytes
    key: [sasl_username]
    count: bytes
    limit: 1000/1h
  - name: user-nets
    kind: distinct_networks
    key: [sasl_username]
    limit: 2/1h
`

// memStore is an in-memory Store with conform as its rule, for tests of
// the check's logic; the real stores pass storetest.
type memStore struct {
	tat  map[[2]string]int64
	nets map[[2]string]map[string]time.Time
}

func newMem() *memStore {
	return &memStore{tat: map[[2]string]int64{}, nets: map[[2]string]map[string]time.Time{}}
}

func (m *memStore) Take(_ context.Context, now time.Time, cells []Cell) ([]bool, error) {
	out := make([]bool, len(cells))
	for i, c := range cells {
		k := [2]string{c.Rule, c.Key}
		m.tat[k], out[i] = conform(m.tat[k], now.UnixNano(), c)
	}
	return out, nil
}

func (m *memStore) SeeNetwork(_ context.Context, now time.Time, w time.Duration, rule, key, nw string) (int, error) {
	k := [2]string{rule, key}
	if m.nets[k] == nil {
		m.nets[k] = map[string]time.Time{}
	}
	m.nets[k][nw] = now.Add(w)
	n := 0
	for _, exp := range m.nets[k] {
		if exp.After(now) {
			n++
		}
	}
	return n, nil
}

func (m *memStore) Counters(context.Context, time.Time) ([]Counter, error)    { return nil, nil }
func (m *memStore) Reset(context.Context, string, string) (int64, error)      { return 0, nil }
func (m *memStore) GC(context.Context, time.Time, int, bool) (GCStats, error) { return GCStats{}, nil }

type hits map[string]int

func (h hits) RateLimitHit(rule string)           { h[rule]++ }
func (hits) RateLimitRules([]string)              {}
func (hits) StoreOp(string, time.Duration, error) {}

func req(state, user, client, instance string) *policy.Request {
	return &policy.Request{ProtocolState: state, SASLUsername: user, Sender: "Alice@Example.org",
		Recipient: "bob@example.net", ClientAddress: netip.MustParseAddr(client), Instance: instance, Size: 600}
}

func TestCheckMessagesOncePerInstanceThenDefer(t *testing.T) {
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	h := hits{}
	c, err := New(cfg, newMem(), Options{Observer: h})
	if err != nil {
		t.Fatal(err)
	}
	check := func(r *policy.Request, msg *policy.Message) policy.Result {
		t.Helper()
		res, err := c.Check(context.Background(), &policy.State{Req: r, Msg: msg, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Two messages of three recipients each: the burst of 2 messages.
	for _, inst := range []string{"m1", "m2"} {
		msg := policy.NewMessage(inst)
		for range 3 {
			if res := check(req("RCPT", "alice", "192.0.2.1", inst), msg); !res.Action.IsDunno() {
				t.Fatalf("%s: %v, want DUNNO", inst, res)
			}
		}
	}
	res := check(req("RCPT", "alice", "192.0.2.1", "m3"), policy.NewMessage("m3"))
	want := "DEFER_IF_PERMIT 4.7.1 user-msgs: alice sends too fast, try again later"
	if res.Action.String() != want || res.Reason != "user-msgs"+reasonRate {
		t.Fatalf("third message: %q (%s), want %q", res.Action, res.Reason, want)
	}
	// Unauthenticated: the rules keyed by login do not apply.
	if res := check(req("RCPT", "", "192.0.2.1", "m4"), policy.NewMessage("m4")); res.Reason != "" {
		t.Errorf("unauthenticated: %v", res)
	}
	// Bytes at END-OF-MESSAGE only: 600 of a burst of 1000, then over.
	if res := check(req("END-OF-MESSAGE", "carol", "192.0.2.1", "b1"), nil); !res.Action.IsDunno() {
		t.Fatalf("first 600 bytes: %v", res)
	}
	if res := check(req("END-OF-MESSAGE", "carol", "192.0.2.1", "b2"), nil); res.Reason != "user-bytes"+reasonRate {
		t.Fatalf("second 600 bytes: %v", res)
	}
	if h["user-msgs"] != 1 || h["user-bytes"] != 1 {
		t.Errorf("hits %v", h)
	}
}

func TestCheckDistinctNetworksHolds(t *testing.T) {
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = cfg.Rules[3:] // user-nets alone
	c, _ := New(cfg, newMem(), Options{})
	var res policy.Result
	for i, client := range []string{"192.0.2.1", "198.51.100.1", "192.0.2.99", "203.0.113.5"} {
		inst := string(rune('a' + i))
		res, err = c.Check(context.Background(), &policy.State{Req: req("RCPT", "dave", client, inst),
			Msg: policy.NewMessage(inst), Now: t0.Add(time.Duration(i) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 && !res.Action.IsDunno() {
			t.Fatalf("network %d (%s): %v", i+1, client, res)
		}
	}
	want := "HOLD user-nets: dave seen from too many networks"
	if res.Action.String() != want || res.Action.Class() != policy.ClassHold {
		t.Fatalf("third network: %q, want %q", res.Action, want)
	}
}

func TestSafeKey(t *testing.T) {
	if got := safeKey("a\"b c\x00@x.org"); got != "a?b?c?@x.org" {
		t.Errorf("safeKey = %q", got)
	}
	if got := safeKey(strings.Repeat("x", 100)); len(got) != 64 {
		t.Errorf("long key: %d chars", len(got))
	}
}

// Quick passes a request no rule applies to, and leaves to Check every
// request a rule applies to (it charges the store).
func TestQuick(t *testing.T) {
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, newMem(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	quick := func(r *policy.Request) (policy.Result, bool) {
		return c.Quick(&policy.State{Req: r, Msg: policy.NewMessage(r.Instance), Now: t0})
	}
	if res, ok := quick(req("RCPT", "", "192.0.2.1", "m1")); !ok || !res.Action.IsDunno() || res.Reason != "" {
		t.Errorf("unauthenticated: %+v %v, want a plain pass from memory", res, ok)
	}
	if res, ok := quick(req("RCPT", "alice", "192.0.2.1", "m2")); ok {
		t.Errorf("authenticated, under the user rules: answered from memory: %+v", res)
	}
}

// config check prints what the check runs with: each rule's defaults
// written out, and the result still a valid configuration.
func TestEffectiveWritesDefaults(t *testing.T) {
	cfg, err := load(t, `
rules:
  - {name: per-user, key: [sasl_username], limit: 300/1h}
  - {name: stolen-login, key: [sasl_username], kind: distinct_networks, limit: 4/24h}
`)
	if err != nil {
		t.Fatal(err)
	}
	eff := cfg.Effective()
	rate, nets := eff.Rules[0], eff.Rules[1]
	if rate.Kind != KindRate || rate.Count != CountMessages || rate.Burst != 300 || rate.PrefixV4 != 24 ||
		rate.PrefixV6 != 64 || rate.Action.Verb != policy.DeferIfPermit {
		t.Errorf("rate rule: %+v", rate)
	}
	if nets.Count != "" || nets.Burst != 0 || nets.Action.Verb != policy.Hold {
		t.Errorf("distinct_networks rule: %+v", nets)
	}
	if err := eff.Validate(); err != nil {
		t.Errorf("the effective config does not load back: %v", err)
	}
	if cfg.Rules[0].Kind != "" {
		t.Error("Effective changed the config it was given")
	}
}
