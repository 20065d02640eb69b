package spf_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
)

var zones = []string{
	"test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120",
	`pass.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 ip6:2001:db8::/32 -all"`,
	`soft.test. 300 IN TXT "v=spf1 ip4:192.0.2.1 ~all"`,
	`neutral.test. 300 IN TXT "v=spf1 ?all"`,
	`perm.test. 300 IN TXT "v=spf1 foo:bar -all"`,
	`slow.test. 300 IN TXT "v=spf1 a:slowhost.test -all"`,
	`broken.test. 300 IN TXT "v=spf1 include:servfail.test -all"`,
	"nospf.test. 300 IN A 192.0.2.1",
	`mx.test. 300 IN TXT "v=spf1 mx -all"`,
	"mx.test. 300 IN MX 10 mail.mx.test.",
	"mail.mx.test. 300 IN A 192.0.2.5",
	`helo.test. 300 IN TXT "v=spf1 a -all"`,
	"helo.test. 300 IN A 192.0.2.7",
	`all.test. 300 IN TXT "v=spf1 +all"`,
	`wide.test. 300 IN TXT "v=spf1 ip4:0.0.0.0/0 ip6:::/0 -all"`,
	// Every unicast address but the reserved probes.
	`unicast.test. 300 IN TXT "v=spf1 ip4:0.0.0.0/1 ip4:128.0.0.0/2 ip4:192.0.0.0/3 ip6:2000::/3 -all"`,
}

func newChecker(t testing.TB, set func(*spf.Config)) (*spf.Checker, *dnstest.Server) {
	t.Helper()
	srv := dnstest.New(t, zones...)
	srv.SetDelay("slowhost.test", 5*time.Second)
	srv.SetRcode("servfail.test", dns.RcodeServerFailure)
	r, err := resolver.New(resolver.Config{Server: srv.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := spf.DefaultConfig()
	cfg.Receiver = "mx.local.test"
	cfg.Timeout = 300 * time.Millisecond
	if set != nil {
		set(&cfg)
	}
	c, err := spf.New(cfg, r, spf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func state(client, sender, helo, instance string, msg *policy.Message) *policy.State {
	r := &policy.Request{ProtocolState: "RCPT", ClientAddress: netip.MustParseAddr(client),
		Sender: sender, HeloName: helo, Recipient: "u@local.test", Instance: instance}
	if msg == nil {
		msg = policy.NewMessage(instance)
	}
	return &policy.State{Req: r, Msg: msg}
}

func TestResults(t *testing.T) {
	c, _ := newChecker(t, nil)
	tests := []struct {
		client, sender, helo string
		result               spf.Result
		domain               string // Facts.SPFDomain
		action               string
	}{
		{"192.0.2.1", "a@pass.test", "h.test", "pass", "pass.test", "DUNNO"},
		{"2001:db8::9", "a@Pass.Test", "h.test", "pass", "pass.test", "DUNNO"},
		{"192.0.2.99", "a@pass.test", "h.test", "fail", "",
			"550 5.7.23 SPF validation failed: pass.test does not designate 192.0.2.99 as a permitted sender"},
		{"192.0.2.99", "a@soft.test", "h.test", "softfail", "", "DUNNO"},
		{"192.0.2.99", "a@neutral.test", "h.test", "neutral", "", "DUNNO"},
		{"192.0.2.99", "a@nospf.test", "h.test", "none", "", "DUNNO"},
		{"192.0.2.99", "a@nxdomain.test", "h.test", "none", "", "DUNNO"},
		{"192.0.2.99", "a@perm.test", "h.test", "permerror", "", "DUNNO"},
		{"192.0.2.99", "a@broken.test", "h.test", "temperror", "",
			"DEFER_IF_PERMIT 4.7.24 SPF temporary error for broken.test, try again later"},
		{"192.0.2.5", "a@mx.test", "h.test", "pass", "mx.test", "DUNNO"},
		{"192.0.2.6", "a@mx.test", "h.test", "fail", "", "550 5.7.23 SPF validation failed: mx.test does not designate 192.0.2.6 as a permitted sender"},
		// Null sender: the HELO identity, whose pass keys no pool (one
		// host's policy).
		{"192.0.2.7", "", "helo.test", "pass", "", "DUNNO"},
		{"192.0.2.8", "", "HELO.test.", "fail", "",
			"550 5.7.23 SPF validation failed: helo.test does not designate 192.0.2.8 as a permitted sender"},
		{"192.0.2.8", "", "[192.0.2.8]", "none", "", "DUNNO"},
		{"192.0.2.8", "", "localhost", "none", "", "DUNNO"},
		// A policy that passes everyone passes, but vouches for no pool:
		// no SPFDomain, so greylisting keys by network as without SPF.
		{"192.0.2.99", "a@all.test", "h.test", "pass", "", "DUNNO"},
		{"192.0.2.99", "a@wide.test", "h.test", "pass", "", "DUNNO"},
		{"2001:db8::99", "a@wide.test", "h.test", "pass", "", "DUNNO"},
		// Nor does one that passes every unicast address but the probes:
		// it passes the client's mirror (45.33.10.20 -> 173.33.10.20).
		{"45.33.10.20", "a@unicast.test", "h.test", "pass", "", "DUNNO"},
		{"203.0.113.5", "a@unicast.test", "h.test", "pass", "", "DUNNO"},
		{"2a02:db8:77::9", "a@unicast.test", "h.test", "pass", "", "DUNNO"},
		// A real pool's own networks: its mirror is far outside them.
		{"192.0.2.1", "a@pass.test", "h.test", "pass", "pass.test", "DUNNO"},
		{"2001:db8::5", "a@pass.test", "h.test", "pass", "pass.test", "DUNNO"},
	}
	for _, tt := range tests {
		st := state(tt.client, tt.sender, tt.helo, "i1", nil)
		res, err := c.Check(context.Background(), st)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.sender, tt.client, err)
		}
		if st.Facts.SPF != tt.result || st.Facts.SPFDomain != tt.domain || res.Action.String() != tt.action {
			t.Errorf("%s from %s (helo %s): got %s/%q %q, want %s/%q %q", tt.sender, tt.client, tt.helo,
				st.Facts.SPF, st.Facts.SPFDomain, res.Action, tt.result, tt.domain, tt.action)
		}
	}
}

// TestSilentLookupIsResolverError: a lookup our resolver does not answer
// within spf.timeout (300ms here) is our failure, not a verdict on the
// sender: the check returns ErrResolver and queues no header.
func TestSilentLookupIsResolverError(t *testing.T) {
	c, _ := newChecker(t, nil)
	msg := policy.NewMessage("i1")
	st := state("192.0.2.99", "a@slow.test", "h.test", "i1", msg)
	res, err := c.Check(context.Background(), st)
	if !errors.Is(err, spf.ErrResolver) || res.Action.Verb != "" || st.Facts.SPF != "" {
		t.Fatalf("got %s %v %v, want ErrResolver and no result", st.Facts.SPF, res.Action, err)
	}
	if k := policy.KindOf(err); k != policy.ErrorTimeout {
		t.Errorf("our resolver not answering in time is a %s error, want timeout", k)
	}
}

func TestActionTable(t *testing.T) {
	c, _ := newChecker(t, func(cfg *spf.Config) {
		cfg.Actions = map[string]string{
			"temperror": "DUNNO",
			"permerror": "550 5.7.24 SPF permanent error for {domain}",
			"softfail":  "DEFER_IF_PERMIT 4.7.23 {result} for {sender} from {ip} (helo {helo}, {identity})",
		}
	})
	for sender, want := range map[string]string{
		"a@broken.test":  "DUNNO",
		"a@perm.test":    "550 5.7.24 SPF permanent error for perm.test",
		"a@soft.test":    "DEFER_IF_PERMIT 4.7.23 softfail for a@soft.test from 192.0.2.99 (helo h.test, mailfrom)",
		"a@pass.test":    "550 5.7.23 SPF validation failed: pass.test does not designate 192.0.2.99 as a permitted sender",
		"a@neutral.test": "DUNNO",
	} {
		res, _ := c.Check(context.Background(), state("192.0.2.99", sender, "h.test", "i1", nil))
		if res.Action.String() != want {
			t.Errorf("%s: got %q, want %q", sender, res.Action, want)
		}
	}
}

// TestOncePerMessage: three recipients of one message cost one
// evaluation and get one Received-SPF header, through the real engine.
func TestOncePerMessage(t *testing.T) {
	c, srv := newChecker(t, nil)
	eng := policy.NewEngine(policy.Options{}, []policy.Step{{Check: c}})
	msg := policy.NewMessage("i7")
	var actions []string
	for _, rcpt := range []string{"a@local.test", "b@local.test", "c@local.test"} {
		st := state("192.0.2.1", "a@pass.test", "h.test", "i7", msg)
		st.Req.Recipient = rcpt
		d := eng.Evaluate(context.Background(), st.Req, msg)
		actions = append(actions, d.Action.String())
	}
	want := "PREPEND Received-SPF: pass (mx.local.test: domain of a@pass.test designates 192.0.2.1 as permitted sender)" +
		` receiver=mx.local.test; client-ip=192.0.2.1; envelope-from="a@pass.test"; helo=h.test; identity=mailfrom`
	if actions[0] != want || actions[1] != "DUNNO" || actions[2] != "DUNNO" {
		t.Fatalf("actions:\n%s\nwant first:\n%s", strings.Join(actions, "\n"), want)
	}
	// A pass costs two evaluations of the record, the client's and the
	// probe that tells a policy naming its hosts from one passing
	// everyone, but one query: the probe reads the evaluation's answers.
	if n := srv.Queries("pass.test", dns.TypeTXT); n != 1 {
		t.Fatalf("want one SPF check (1 TXT query) per message, got %d TXT queries", n)
	}
	// A new message from the same client and sender reuses the verdict
	// (cache_test.go), with a header of its own.
	msg2 := policy.NewMessage("i8")
	d := eng.Evaluate(context.Background(), state("192.0.2.1", "a@pass.test", "h.test", "i8", msg2).Req, msg2)
	if n := srv.Queries("pass.test", dns.TypeTXT); n != 1 || d.Action.String() != want {
		t.Fatalf("a new instance: %d TXT queries, action %q; want 1 and the header", n, d.Action)
	}
}

func TestHeaderOff(t *testing.T) {
	c, _ := newChecker(t, func(cfg *spf.Config) { cfg.Header = spf.HeaderNone })
	eng := policy.NewEngine(policy.Options{}, []policy.Step{{Check: c}})
	msg := policy.NewMessage("i1")
	d := eng.Evaluate(context.Background(), state("192.0.2.1", "a@pass.test", "h.test", "i1", msg).Req, msg)
	if !d.Action.IsDunno() {
		t.Fatalf("header: false must not prepend, got %v", d.Action)
	}
}

func TestHeaderQuoting(t *testing.T) {
	c, _ := newChecker(t, nil)
	eng := policy.NewEngine(policy.Options{}, []policy.Step{{Check: c}})
	msg := policy.NewMessage("i1")
	st := state("2001:db8::9", `"odd (x)"@pass.test`, "", "i1", msg)
	d := eng.Evaluate(context.Background(), st.Req, msg)
	want := `PREPEND Received-SPF: pass (mx.local.test: domain of "odd \(x\)"@pass.test designates 2001:db8::9 as permitted sender)` +
		` receiver=mx.local.test; client-ip="2001:db8::9"; envelope-from="\"odd (x)\"@pass.test"; helo=""; identity=mailfrom`
	if d.Action.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", d.Action, want)
	}
}

func TestConfig(t *testing.T) {
	if err := spf.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cfg := spf.DefaultConfig()
	if err := yaml.Unmarshal([]byte("actions:\n  temperror: DUNNO\ntimeout: 2s\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Actions["temperror"] != "DUNNO" || cfg.Actions["fail"] == "" || cfg.Timeout != 2*time.Second {
		t.Fatalf("YAML must override single actions and keep the rest: %+v", cfg)
	}
	for key, mod := range map[string]func(*spf.Config){
		"spf.timeout":      func(c *spf.Config) { c.Timeout = time.Millisecond },
		"spf.receiver":     func(c *spf.Config) { c.Receiver = "a b" },
		"spf.actions.fial": func(c *spf.Config) { c.Actions = map[string]string{"fial": "DUNNO"} },
		"spf.actions.fail": func(c *spf.Config) { c.Actions = map[string]string{"fail": "550"} },
		"spf.actions.pass": func(c *spf.Config) { c.Actions = map[string]string{"pass": "OKAY"} },
		"spf.explanation":  func(c *spf.Config) { c.Explanation = "a\nb" },
	} {
		c := spf.DefaultConfig()
		mod(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), key+":") {
			t.Errorf("want an error naming %s, got %v", key, err)
		}
	}
}
