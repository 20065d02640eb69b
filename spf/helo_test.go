package spf_test

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
)

// heloZones: a HELO name whose policy lists one host, a sender domain
// with its own explanation, and one passing everything.
var heloZones = []string{
	`mail.helo.test. 300 IN TXT "v=spf1 ip4:192.0.2.20 -all"`,
	`expl.test. 300 IN TXT "v=spf1 ip4:192.0.2.20 -all exp=why.expl.test"`,
	`why.expl.test. 300 IN TXT "%{i} may not send for %{d}; see https://expl.test/spf?s=%{S}"`,
	`redir.test. 300 IN TXT "v=spf1 redirect=expl.test exp=ignored.expl.test"`,
	`ignored.expl.test. 300 IN TXT "not this one"`,
	`badexp.test. 300 IN TXT "v=spf1 -all exp=broken.expl.test"`,
	`broken.expl.test. 300 IN TXT "bad %x macro"`,
}

func heloChecker(t *testing.T, set func(*spf.Config)) (*spf.Checker, *policy.Engine, func(string, uint16) int) {
	t.Helper()
	c, srv := newChecker(t, set)
	srv.Add(heloZones...)
	eng := policy.NewEngine(policy.Options{Logger: quietLog()}, []policy.Step{{Check: c}})
	return c, eng, srv.Queries
}

func decide(eng *policy.Engine, client, sender, helo, instance string) *policy.Decision {
	st := state(client, sender, helo, instance, nil)
	return eng.Evaluate(context.Background(), st.Req, policy.NewMessage(instance))
}

// A HELO name whose policy does not list the client is refused by
// helo_fail (by default fail's action) naming the HELO identity, whatever
// MAIL FROM says; a pass or a name without SPF lets MAIL FROM
// decide.
func TestHELOIdentity(t *testing.T) {
	_, eng, queries := heloChecker(t, nil)
	d := decide(eng, "192.0.2.21", "a@pass.test", "mail.helo.test", "i1")
	want := "550 5.7.23 SPF validation failed: mail.helo.test does not designate 192.0.2.21 as a permitted sender"
	if d.Action.String() != want || d.Facts.SPF != "fail" || !strings.Contains(d.Reason, "helo=mail.helo.test") {
		t.Fatalf("HELO fail: %v (%s, %q), want %q", d.Action, d.Facts.SPF, d.Reason, want)
	}
	// MAIL FROM was evaluated beside it (one deadline for both, so slow
	// DNS cannot make the answer depend on a cached HELO result), but the
	// HELO fail decided alone: the reason names the HELO identity only.
	if strings.Contains(d.Reason, "mailfrom=") {
		t.Errorf("a HELO fail decides alone, but the reason names MAIL FROM: %q", d.Reason)
	}
	// The HELO name passes: MAIL FROM decides, here a fail.
	d = decide(eng, "192.0.2.20", "a@pass.test", "mail.helo.test", "i2")
	if !strings.Contains(d.Action.String(), "pass.test does not designate 192.0.2.20") || !strings.Contains(d.Reason, "mailfrom=pass.test") {
		t.Errorf("HELO pass, MAIL FROM fail: %v (%q)", d.Action, d.Reason)
	}
	// Once per client and HELO name: a second message does not ask again.
	decide(eng, "192.0.2.21", "b@pass.test", "mail.helo.test", "i3")
	if n := queries("mail.helo.test", dns.TypeTXT); n != 2 {
		t.Errorf("HELO policy asked %d times for two clients over three messages, want 2", n)
	}
}

func TestHELOFailAction(t *testing.T) {
	_, eng, _ := heloChecker(t, func(c *spf.Config) {
		c.Actions = map[string]string{"fail": "554 5.7.23 {identity} {domain}"}
	})
	if d := decide(eng, "192.0.2.21", "a@pass.test", "mail.helo.test", "i1"); d.Action.String() != "554 5.7.23 helo mail.helo.test" {
		t.Errorf("helo_fail defaults to fail's action: got %v", d.Action)
	}
	_, eng, _ = heloChecker(t, func(c *spf.Config) { c.Actions = map[string]string{spf.HeloFail: "DUNNO"} })
	d := decide(eng, "192.0.2.1", "a@pass.test", "mail.helo.test", "i1")
	if d.Facts.SPF != "pass" || !d.Action.IsDunno() && d.Action.Verb != policy.Prepend {
		t.Errorf("helo_fail DUNNO: MAIL FROM must decide, got %s %v", d.Facts.SPF, d.Action)
	}
}

// A fail carries the domain's own explanation (exp=), macros expanded; a
// redirect uses the target's exp= and never the original's; a broken
// explanation falls back to ours.
func TestExplanation(t *testing.T) {
	_, eng, _ := heloChecker(t, nil)
	for sender, want := range map[string]string{
		"a@expl.test":   "550 5.7.23 expl.test explains: 192.0.2.99 may not send for expl.test; see https://expl.test/spf?s=a%40expl.test",
		"a@redir.test":  "550 5.7.23 redir.test explains: 192.0.2.99 may not send for expl.test; see https://expl.test/spf?s=a%40redir.test",
		"a@badexp.test": "550 5.7.23 SPF validation failed: badexp.test does not designate 192.0.2.99 as a permitted sender",
	} {
		if d := decide(eng, "192.0.2.99", sender, "h.test", "i1"); d.Action.String() != want {
			t.Errorf("%s: got %q, want %q", sender, d.Action, want)
		}
	}
}

// Authentication-Results (RFC 8601) carries both identities; "both"
// queues Received-SPF first, then it.
func TestAuthenticationResults(t *testing.T) {
	_, eng, _ := heloChecker(t, func(c *spf.Config) { c.Header = spf.HeaderBoth; c.AuthservID = "mx.auth.test" })
	msg := policy.NewMessage("i1")
	var got []string
	for _, rcpt := range []string{"a@local.test", "b@local.test", "c@local.test"} {
		st := state("192.0.2.20", `"odd; x"@soft.test`, "mail.helo.test", "i1", msg)
		st.Req.Recipient = rcpt
		got = append(got, eng.Evaluate(context.Background(), st.Req, msg).Action.String())
	}
	if !strings.HasPrefix(got[0], "PREPEND Received-SPF: softfail") {
		t.Errorf("first header: %s", got[0])
	}
	want := `PREPEND Authentication-Results: mx.auth.test; spf=pass smtp.helo=mail.helo.test; spf=softfail smtp.mailfrom="\"odd; x\"@soft.test"`
	if got[1] != want || got[2] != "DUNNO" {
		t.Errorf("headers:\n%s\nwant second:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestAuthenticationResultsOnly(t *testing.T) {
	_, eng, _ := heloChecker(t, func(c *spf.Config) { c.Header = spf.HeaderAuthResults })
	d := decide(eng, "192.0.2.7", "", "HELO.test", "i1")
	if want := "PREPEND Authentication-Results: mx.local.test; spf=pass smtp.helo=HELO.test"; d.Action.String() != want {
		t.Errorf("null sender: got %q, want %q", d.Action, want)
	}
	d = decide(eng, "192.0.2.1", "a@pass.test", "[192.0.2.1]", "i2")
	if want := "PREPEND Authentication-Results: mx.local.test; spf=pass smtp.mailfrom=a@pass.test"; d.Action.String() != want {
		t.Errorf("address literal HELO: got %q, want %q", d.Action, want)
	}
}

func TestHeaderModeConfig(t *testing.T) {
	for in, want := range map[string]spf.HeaderMode{
		"true": spf.HeaderReceivedSPF, "false": spf.HeaderNone, "both": spf.HeaderBoth,
		"authentication-results": spf.HeaderAuthResults, "none": spf.HeaderNone, "received-spf": spf.HeaderReceivedSPF,
	} {
		cfg := spf.DefaultConfig()
		if err := yaml.Unmarshal([]byte("header: "+in+"\n"), &cfg); err != nil || cfg.Header != want {
			t.Errorf("header: %s: got %q %v, want %q", in, cfg.Header, err, want)
		}
	}
	cfg := spf.DefaultConfig()
	if err := yaml.Unmarshal([]byte("header: dkim\n"), &cfg); err == nil || !strings.Contains(err.Error(), "spf.header") {
		t.Errorf("header: dkim: want an error naming spf.header, got %v", err)
	}
	out, _ := yaml.Marshal(spf.DefaultConfig())
	if !strings.Contains(string(out), "header: received-spf") {
		t.Errorf("default header marshals as:\n%s", out)
	}
	bad := spf.DefaultConfig()
	bad.AuthservID = "mx example"
	if err := bad.Validate(); err == nil || !strings.HasPrefix(err.Error(), "spf.authserv_id:") {
		t.Errorf("want an error naming spf.authserv_id, got %v", err)
	}
}
