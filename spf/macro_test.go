package spf

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// The examples of RFC 7208 §7.4, and the corner cases of §7.3.
func TestExpandMacros(t *testing.T) {
	env := macroEnv{sender: "strong-bad@email.example.com", domain: "email.example.com",
		ip: netip.MustParseAddr("192.0.2.3"), helo: "mx.example.org", receiver: "mx.local.test",
		now: time.Unix(1700000000, 0)}
	v6 := env
	v6.ip = netip.MustParseAddr("2001:db8::cb01")
	tests := []struct {
		env     macroEnv
		in      string
		explain bool
		want    string
	}{
		{env, "%{s}", false, "strong-bad@email.example.com"},
		{env, "%{o}", false, "email.example.com"},
		{env, "%{d}", false, "email.example.com"},
		{env, "%{d4}", false, "email.example.com"},
		{env, "%{d3}", false, "email.example.com"},
		{env, "%{d2}", false, "example.com"},
		{env, "%{d1}", false, "com"},
		{env, "%{dr}", false, "com.example.email"},
		{env, "%{d2r}", false, "example.email"},
		{env, "%{l}", false, "strong-bad"},
		{env, "%{l-}", false, "strong.bad"},
		{env, "%{lr}", false, "strong-bad"},
		{env, "%{lr-}", false, "bad.strong"},
		{env, "%{l1r-}", false, "strong"},
		{env, "%{ir}.%{v}._spf.%{d2}", false, "3.2.0.192.in-addr._spf.example.com"},
		{env, "%{lr-}.lp._spf.%{d2}", false, "bad.strong.lp._spf.example.com"},
		{env, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", false, "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
		{env, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", false, "3.2.0.192.in-addr.strong.lp._spf.example.com"},
		{env, "%{d2}.trusted-domains.example.net", false, "example.com.trusted-domains.example.net"},
		{v6, "%{ir}.%{v}._spf.%{d2}", false,
			"1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"},
		{env, "%%%_%-", false, "% %20"},
		{env, "%{L}", false, "strong-bad"},
		{env, "%{S}", false, "strong-bad%40email.example.com"},
		{env, "%{h}", false, "mx.example.org"},
		{env, "%{p}", false, "unknown"},
		{env, "%{c} via %{r} at %{t}", true, "192.0.2.3 via mx.local.test at 1700000000"},
		{v6, "%{c}", true, "2001:db8::cb01"},
	}
	for _, tt := range tests {
		got, err := expandMacros(tt.in, tt.env, tt.explain)
		if err != nil || got != tt.want {
			t.Errorf("expand %q: %q %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

// A macro without transformers or delimiters is the value as it is (RFC
// 7208 §7.3 splits only "if transformers or delimiters are provided"):
// local parts such as "a..b." exist.
func TestMacroWithoutTransformersIsVerbatim(t *testing.T) {
	env := macroEnv{sender: "a..b.@example.com", domain: "example.com",
		ip: netip.MustParseAddr("192.0.2.3"), helo: "mx.example.org", now: time.Unix(1700000000, 0)}
	for in, want := range map[string]string{
		"%{l}":        "a..b.",
		"%{s}":        "a..b.@example.com",
		"%{L}":        "a..b.",
		"%{l} is bad": "a..b. is bad",
		"%{l1}":       "b",
		"%{lr}":       "b.a",
	} {
		if got, err := expandMacros(in, env, true); err != nil || got != want {
			t.Errorf("expand %q with sender %q: %q, %v; want %q", in, env.sender, got, err, want)
		}
	}
}

func TestExpandMacrosRejects(t *testing.T) {
	env := macroEnv{sender: "a@b.test", domain: "b.test", ip: netip.MustParseAddr("192.0.2.3")}
	for _, in := range []string{
		"%", "%a", "%{", "%{d", "%{x}", "%{d0}", "%{d*}", "a b", "caf\xc3\xa9", "x\x01",
		"%{c}", "%{r}", "%{t}", // explanation letters outside an explanation
	} {
		if got, err := expandMacros(in, env, false); !errors.Is(err, errMacro) {
			t.Errorf("expand %q: %q %v, want a macro error", in, got, err)
		}
	}
}

func TestCheckRecord(t *testing.T) {
	for _, rec := range []string{
		"v=spf1", "V=SPF1 -ALL", "v=spf1  ip4:192.0.2.0/24   -all ", "v=spf1 a mx ptr a:x.test/24 mx:x.test//64 a/24//0",
		"v=spf1 ip6:2001:db8::/32 ip6:::ffff:1.2.3.4 ip4:1.2.3.4/32 include:_spf.google.com ~all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all", "v=spf1 redirect=_spf.example.com",
		"v=spf1 -all exp=explain._spf.%{d}", "v=spf1 a:foo:bar/baz.example.com", "v=spf1 ptr:%{d}.",
		"v=spf1 foo=%{d}bar moo.cow-far_out=man:dog/cat -all", "v=spf1 a:%{d}.", "v=spf1 a:123-456.com",
	} {
		if err := checkRecord(rec); err != nil {
			t.Errorf("%q: %v, want valid", rec, err)
		}
	}
	for _, rec := range []string{
		"v=spf1 ip4:1.2.3.4 -all moo", "v=spf1 a:foo-bar -all", "v=spf1 a:museum", "v=spf1 a:abc.123",
		"v=spf1 a:example.-com", "v=spf1 a:example.com:8080", "v=spf1 ip4:1.2.3.4/032", "v=spf1 ip4:1.2.3.4/33",
		"v=spf1 ip6:::1/129", "v=spf1 ip6", "v=spf1 ip4:1.2.3", "v=spf1 ip4:::1", "v=spf1 redirect=-all",
		"v=spf1 exp= -all", "v=spf1 exp=a.test exp=b.test", "v=spf1 redirect=a.test redirect=b.test",
		"v=spf1 redirect:a.test", "v=spf1 -all foo=%abc", "v=spf1 -all exp=%{r}.example.com",
		"v=spf1 a:ctrl.example.com\rptr -all", "v=spf1 a:\xef\xbb\xbfgarbage.example.net -all",
		"v=spf1 a:foo.example.com\x00", "v=spf1 all:x", "v=spf1 include", "v=spf1 mx:", "v=spf1 a:.",
		"v=spf1 ip4:192.0.2.0/+24", "v=spf1 ip6:2001:db8::/-1", "v=spf1 a/+24", "v=spf1 mx//+64",
	} {
		if err := checkRecord(rec); !errors.Is(err, errSyntax) {
			t.Errorf("%q: %v, want a syntax error", rec, err)
		}
	}
}

func TestOneLine(t *testing.T) {
	long := make([]byte, 600)
	for i := range long {
		long[i] = 'x'
	}
	for in, want := range map[string]string{
		"  See http://example.com/why?s=a  ": "See http://example.com/why?s=a",
		"a\r\nb\tc\x00d\xc3\xa9":             "a??b?c?d??",
		string(long):                         string(long[:maxExplanation]),
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
