package spf_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
)

// TestTemplateValueNotExpandedAgain: a client-supplied value filled into
// an spf.actions template is text, never a placeholder: a sender whose
// local part spells "{explanation}" (braces are atext, RFC 5322 §3.2.3)
// must appear as written, as {result} or {ip} in it do (one
// strings.Replacer pass), not be expanded a second time.
func TestTemplateValueNotExpandedAgain(t *testing.T) {
	c, _ := newChecker(t, func(cfg *spf.Config) {
		cfg.Actions = map[string]string{"fail": "550 5.7.23 {explanation} (sender {sender})"}
	})
	st := state("192.0.2.99", "x{explanation}{ip}@pass.test", "h.test", "i1", nil)
	res, err := c.Check(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	want := "550 5.7.23 SPF validation failed: pass.test does not designate 192.0.2.99 as a permitted sender" +
		" (sender x{explanation}{ip}@pass.test)"
	if got := res.Action.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestActionKeepsItsClassWhenValueEmpty: spf.actions.fail "450 {helo}"
// loads (checked with helo "mail.example.com"), but a client that sent
// no HELO name renders it as a bare "450", which does not parse; the
// fallback is the default fail action, a permanent 550: the admin's
// temporary refusal becomes a bounce.
func TestActionKeepsItsClassWhenValueEmpty(t *testing.T) {
	c, _ := newChecker(t, func(cfg *spf.Config) {
		cfg.Actions = map[string]string{"fail": "450 {helo}"}
	})
	res, err := c.Check(context.Background(), state("192.0.2.99", "a@pass.test", "", "i1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Action.IsReject() || !res.Action.IsDefer() {
		t.Errorf("fail action %q answered %q: a %s, want a deferral", "450 {helo}", res.Action, res.Action.Class())
	}
}

// TestExplanationIsAttributed: the exp= text is the sender domain's, not
// ours, fetched from its DNS; RFC 7208 §6.2: software "SHOULD make it
// clear that the explanation string comes from a third party", e.g. by
// prepending "%{o} explains: " (the §8.4 example reply reads "The domain
// example.com explains: ..."). A reply that is the domain's text alone
// lets it speak as this server ("mailbox over quota, ...").
func TestExplanationIsAttributed(t *testing.T) {
	c, srv := newChecker(t, nil)
	srv.Add(`quota.test. 300 IN TXT "v=spf1 ip4:192.0.2.20 -all exp=why.quota.test"`,
		`why.quota.test. 300 IN TXT "Mailbox over quota, log in at https://phish.example/ to fix"`)
	res, err := c.Check(context.Background(), state("192.0.2.99", "a@quota.test", "h.test", "i1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Action.String(); !strings.Contains(got, "quota.test") {
		t.Errorf("the domain's explanation is sent as ours, naming no source: %q", got)
	}
}

// The Received-SPF field goes out as one line (PREPEND takes one), and
// RFC 5322 §2.1.1 says "Each line of characters MUST be no more than 998
// characters". Postfix takes an SMTP command line up to line_length_limit
// (2048), so a MAIL FROM or HELO can be far longer than SMTP allows: the
// field then leaves out the comment, and then the client's values.
func TestReceivedSPFLineLength(t *testing.T) {
	c, _ := newChecker(t, nil)
	for _, tc := range []struct{ sender, helo, want string }{
		{strings.Repeat("a", 600) + "@pass.test", "h.test", "envelope-from="},
		{strings.Repeat("a", 900) + "@pass.test", "h.test", "client-ip=192.0.2.1"},
		{"a@pass.test", "h" + strings.Repeat(".h", 600), "client-ip=192.0.2.1"},
	} {
		h := prepended(t, c, "192.0.2.1", tc.sender, tc.helo)
		if len(h) > 998 || !strings.HasPrefix(h, "Received-SPF: pass") || !strings.Contains(h, tc.want) {
			t.Errorf("sender of %d, HELO of %d characters: a line of %d:\n%.300s", len(tc.sender), len(tc.helo), len(h), h)
		}
	}
	if h := prepended(t, c, "192.0.2.1", "a@pass.test", "h.test"); !strings.Contains(h, "(") || !strings.Contains(h, `envelope-from="a@pass.test"`) {
		t.Errorf("a short field lost its comment or values: %s", h)
	}
}

// prepended runs c through the engine for one RCPT and returns the
// header text of its PREPEND ("" when the reply is not one).
func prepended(t *testing.T, c *spf.Checker, client, sender, helo string) string {
	t.Helper()
	eng := policy.NewEngine(policy.Options{}, []policy.Step{{Check: c}})
	msg := policy.NewMessage("i1")
	d := eng.Evaluate(context.Background(), state(client, sender, helo, "i1", msg).Req, msg)
	if d.Action.Verb != policy.Prepend {
		t.Fatalf("want a PREPEND, got %q", d.Action)
	}
	return d.Action.Text
}

// Authentication-Results goes out as one line too: a field that would
// pass RFC 5322's 998 characters leaves out the identities' values.
func TestAuthenticationResultsLineLength(t *testing.T) {
	c, _ := newChecker(t, func(cfg *spf.Config) { cfg.Header = spf.HeaderAuthResults })
	h := prepended(t, c, "192.0.2.1", strings.Repeat("a", 1000)+"@pass.test", "h.test")
	if len(h) > 998 || !strings.HasPrefix(h, "Authentication-Results: ") || !strings.Contains(h, "spf=pass") {
		t.Errorf("a line of %d:\n%.300s", len(h), h)
	}
	if h := prepended(t, c, "192.0.2.1", "a@pass.test", "h.test"); !strings.Contains(h, "smtp.mailfrom=a@pass.test") {
		t.Errorf("a short field lost its values: %s", h)
	}
}

// Postfix accepts a UTF-8 MAIL FROM and HELO without SMTPUTF8
// (strict_smtputf8 = no, its default), and such a message may not carry
// 8-bit header text (RFC 5322 §2.2). The result headers write domain
// names as A-labels and an address with a UTF-8 local part as its domain
// (RFC 8616 §4, §5).
func TestResultHeadersAreASCII(t *testing.T) {
	for _, mode := range []spf.HeaderMode{spf.HeaderReceivedSPF, spf.HeaderAuthResults} {
		c, _ := newChecker(t, func(cfg *spf.Config) { cfg.Header = mode })
		for _, tc := range []struct{ sender, helo, want, wantHelo string }{
			{"jösé@pass.test", "hé.test", "pass.test", "xn--h-bga.test"},
			{"a@pass.test", "mail.bücher.example", "a@pass.test", "mail.xn--bcher-kva.example"},
			{"j\xffo@pass.test", "h\xff.test", "pass.test", ""}, // bytes that are not UTF-8
		} {
			h := prepended(t, c, "192.0.2.1", tc.sender, tc.helo)
			if !isASCIIText(h) || !strings.Contains(h, tc.want) {
				t.Errorf("%s, sender %q: %s; want ASCII naming %s", mode, tc.sender, h, tc.want)
			}
			if mode == spf.HeaderReceivedSPF && tc.wantHelo != "" && !strings.Contains(h, "helo="+tc.wantHelo) {
				t.Errorf("%s, HELO %q: %s; want helo=%s", mode, tc.helo, h, tc.wantHelo)
			}
		}
	}
}

// A receiver configured in Unicode is written as A-labels too.
func TestResultHeadersNameAUnicodeReceiverInASCII(t *testing.T) {
	for _, mode := range []spf.HeaderMode{spf.HeaderReceivedSPF, spf.HeaderAuthResults} {
		c, _ := newChecker(t, func(cfg *spf.Config) { cfg.Header, cfg.Receiver = mode, "mx.bücher.example" })
		if h := prepended(t, c, "192.0.2.1", "a@pass.test", "h.test"); !isASCIIText(h) ||
			!strings.Contains(h, "mx.xn--bcher-kva.example") {
			t.Errorf("%s: %s; want the receiver as mx.xn--bcher-kva.example", mode, h)
		}
	}
}

func isASCIIText(s string) bool {
	for _, r := range s {
		if r >= 0x80 {
			return false
		}
	}
	return true
}
