package spf_test

import (
	"context"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
	"github.com/mxpolicyd/mxpolicyd/spf/spftest"
)

// knownDeviations are the cases of the RFC 7208 test suite the daemon
// does not pass, each with why the deviation cannot change a verdict for
// real mail. TestRFC7208Suite fails when one of them starts passing, so
// the list stays true, and when any other case fails.
var knownDeviations = map[string]string{
	// go/spf refuses a "/" in a domain-spec (its expandMacros) and gives
	// permerror; the grammar (RFC 7208 §12, macro-literal) allows it, so
	// "a:foo:bar/baz.example.com" names a host. No mail host has such a
	// name (host names are letters, digits and hyphens, RFC 1123 §2.1),
	// so no real record lists one, and a record that did would get
	// permerror, whose action is DUNNO like pass's.
	"a-colon-domain":            "'/' in a domain-spec",
	"a-colon-domain-ip4mapped":  "'/' in a domain-spec",
	"mx-colon-domain":           "'/' in a domain-spec",
	"mx-colon-domain-ip4mapped": "'/' in a domain-spec",
	// go/spf expands %{p} in a mechanism to "unknown" instead of the
	// client's validated name. RFC 7208 §7.3: %{p} "SHOULD NOT be used";
	// a record that still does matches less, so its mail gets neutral or
	// softfail instead of pass, never fail: nothing is rejected for it.
	// (Explanations do expand %{p}: explain.go.)
	"p-macro-multiple": "%{p} in a mechanism",
}

// TestRFC7208Suite sends every case of the RFC 7208 test suite through
// the engine as a policy request, the suite's zone data served by an
// in-process DNS server, and reads the SPF result from the decision; a
// fail must also carry the domain's explanation (exp=) where the case
// names one.
func TestRFC7208Suite(t *testing.T) {
	var passed, total int
	var failed, all []string
	for _, suite := range spftest.MustLoad(t) {
		srv := suite.Serve(t)
		r, err := resolver.New(resolver.Config{Server: srv.Addr(), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cfg := spf.DefaultConfig()
		cfg.Receiver = "mx.local.test"
		cfg.Actions = map[string]string{spf.HeloFail: "DUNNO"} // score the MAIL FROM identity
		c, err := spf.New(cfg, r, spf.Options{})
		if err != nil {
			t.Fatal(err)
		}
		eng := policy.NewEngine(policy.Options{Logger: quietLog()}, []policy.Step{{Check: c, Timeout: 5 * time.Second}})
		names := make([]string, 0, len(suite.Tests))
		for name := range suite.Tests {
			names = append(names, name)
		}
		sort.Strings(names)
		all = append(all, names...)
		for _, name := range names {
			total++
			if got := runCase(eng, suite.Tests[name]); got != "" {
				failed = append(failed, name)
				if _, known := knownDeviations[name]; !known {
					t.Errorf("%s (%s): %s", name, suite.Description, got)
				}
				continue
			}
			passed++
			if _, known := knownDeviations[name]; known {
				t.Errorf("%s now passes: remove it from knownDeviations", name)
			}
		}
	}
	t.Logf("RFC 7208 suite: %d of %d cases pass; known deviations: %s", passed, total, strings.Join(failed, " "))
	if total < 200 {
		t.Errorf("the suite has %d cases, want its 203: is the file complete?", total)
	}
	for name := range knownDeviations {
		if !slices.Contains(all, name) {
			t.Errorf("knownDeviations names %q, which is not in the suite", name)
		}
	}
}

// runCase answers "" when the case passes, else what went wrong.
func runCase(eng *policy.Engine, tc spftest.Test) string {
	ip, err := netip.ParseAddr(tc.Host)
	if err != nil {
		return "bad host " + tc.Host
	}
	req := &policy.Request{ProtocolState: "RCPT", ClientAddress: ip, Sender: tc.MailFrom,
		HeloName: tc.Helo, Recipient: "u@local.test", Instance: "i"}
	d := eng.Evaluate(context.Background(), req, policy.NewMessage("i"))
	got := string(d.Facts.SPF)
	if !tc.Allows(got) {
		return "got " + got + ", want " + strings.Join(tc.Result, " or ") + " " + d.Reason + " " + d.Action.String()
	}
	want := tc.Explanation
	if want == "DEFAULT" { // the suite's word for the receiver's own text
		want = "SPF validation failed: " + strings.ToLower(tc.MailFrom[strings.LastIndex(tc.MailFrom, "@")+1:]) +
			" does not designate " + ip.Unmap().String() + " as a permitted sender"
	}
	// The domain's own text goes out attributed to it (RFC 7208 §6.2):
	// "<domain> explains: ", with the domain of the sender (%{o}).
	if tc.Explanation != "DEFAULT" && want != "" {
		o := tc.Helo
		if at := strings.LastIndex(tc.MailFrom, "@"); at >= 0 {
			o = tc.MailFrom[at+1:]
		}
		want = o + " explains: " + want
	}
	if got == "fail" && want != "" && d.Action.Text != "5.7.23 "+want {
		return "reply " + d.Action.String() + ", want the explanation " + want
	}
	return ""
}
