package greylist

import (
	"strings"
	"testing"
)

// Real-world envelope sender shapes (identifiers altered, structure kept).
// Each rule of Normalize has at least one case; the pairs that must share a
// key are in TestNormalizeSameKey.
func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ rule, in, want string }{
		// Null sender and case.
		{"null", "", "<>"},
		{"null", "<>", "<>"},
		{"case", "John.Doe@Example.COM", "john.doe@example.com"},
		{"trailing dot", "alice@example.org.", "alice@example.org"},
		{"brackets", "<bob@example.net>", "bob@example.net"},
		{"no domain", "MAILER-DAEMON", "mailer-daemon"},
		{"plain with digits stays", "john2024@gmail.com", "john2024@gmail.com"},
		{"hyphenated name stays", "no-reply@accounts.google.com", "no-reply@accounts.google.com"},
		{"word that is hex stays", "facade@example.com", "facade@example.com"},
		// BATV.
		{"batv prvs", "prvs=0123abcdef=alice@example.org", "alice@example.org"},
		{"batv msprvs1 (SparkPost)", "msprvs1=19001abcDEfgH=bounces-123456-2@sparkpostmail1.com", "bounces-#@sparkpostmail1.com"},
		{"batv barracuda", "btv1==0a1b2c3d4e5==carol@example.com", "carol@example.com"},
		{"batv uppercase", "PRVS=9876FEDCBA=Dave@Example.com", "dave@example.com"},
		// SRS.
		{"srs0", "SRS0=xK3a=7U=example.com=john@forwarder.org", "srs=example.com=john@forwarder.org"},
		{"srs0 plus separator", "SRS0+xK3a=7U=example.com=john@forwarder.org", "srs=example.com=john@forwarder.org"},
		{"srs1", "SRS1=HHH=fwd1.example==xK3a=7U=example.com=john@fwd2.example", "srs=example.com=john@fwd2.example"},
		{"srs of a verp sender", "SRS0=Ab1c=ZZ=lists.example.org=list-bounces+x=y.com@fwd.example", "srs=lists.example.org=list-bounces@fwd.example"},
		{"batv around srs", "prvs=1234abcdef=SRS0=xK3a=7U=example.com=john@fwd.example", "srs=example.com=john@fwd.example"},
		// +extension.
		{"mailman verp", "python-list-bounces+bob=example.com@python.org", "python-list-bounces@python.org"},
		{"sendgrid", "bounces+848413-5f7e-bob=example.com@em1234.example.com", "bounces@em1234.example.com"},
		{"facebook", "notification+zrdohvv0rr80@facebookmail.com", "notification@facebookmail.com"},
		{"google groups", "golang-nuts+bncBDxyzABCDEFGHIJKLMNOPQ@googlegroups.com", "golang-nuts@googlegroups.com"},
		{"mailgun", "bounce+4a8c9f.abc123-bob=example.com@mg.example.com", "bounce@mg.example.com"},
		// Embedded recipient.
		{"ezmlm", "list-return-123-bob=example.com@lists.example.org", "list-return-#@lists.example.org"},
		{"embedded rcpt only", "owner-news-bob=example.com@lists.example.org", "owner-news-#@lists.example.org"},
		// ESP ids and digit/hex runs.
		{"amazon ses", "0100018c5e5a0b11-4e0b1c2d-3e4f-4a5b-8c9d-0e1f2a3b4c5d-000000@amazonses.com", "#@amazonses.com"},
		{"amazon ses eu", "01020190ab12cd34-9f8e7d6c-5b4a-3c2d-1e0f-a1b2c3d4e5f6-000000@eu-west-1.amazonses.com", "#@eu-west-1.amazonses.com"},
		{"mailchimp", "bounce-mc.us5_109548965.1234567-6fc5f2a4ce@mail210.atl221.mcdlv.net", "bounce-mc.us5_#@mail210.atl221.mcdlv.net"},
		{"mandrill", "bounce-md_30850198.5e4f3c2b.v1-d6a0a2c3b4e14f5a9c8b7a6d5e4f3c2b@mandrillapp.com", "bounce-md_#.v1-#@mandrillapp.com"},
		{"exacttarget", "bounce-44_HTML-123456789-1234567-7215678-12@bounce.s7.exacttarget.com", "bounce-#_html-#@bounce.s7.exacttarget.com"},
		{"postgrey digits", "newsletter-2024-05@shop.example", "newsletter-#@shop.example"},
		{"random id token", "r0a1b2c3d4e5f6g7h8@bounce.linkedin.com", "#@bounce.linkedin.com"},
		{"dotted digits", "user.12345@example.com", "user.#@example.com"},
		{"uuid", "b7e3c1a2-0d4f-4e5a-9b8c-7d6e5f4a3b2c@bounce.example.com", "#@bounce.example.com"},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("%s: Normalize(%q) = %q, want %q", tc.rule, tc.in, got, tc.want)
		}
	}
}

// Two messages of one sender must share a key; different senders must not.
// NormalizeMailbox keeps what tells one mailbox from another, and drops
// what Normalize drops from the same person's address.
func TestNormalizeMailbox(t *testing.T) {
	for in, want := range map[string]string{
		"":                                NullSender,
		"<John.Doe@Example.COM.>":         "john.doe@example.com",
		"12345678@qq.com":                 "12345678@qq.com",
		"john.1985@gmail.com":             "john.1985@gmail.com",
		"bob+list@example.net":            "bob@example.net",
		"prvs=0123abcdef=Bob@example.net": "bob@example.net",
		"SRS0=aaaa=AB=example.com=john@fwd.example":  "srs=example.com=john@fwd.example",
		"list-bounces-bob=example.net@lists.example": "list-bounces-bob=example.net@lists.example",
	} {
		if got := NormalizeMailbox(in); got != want {
			t.Errorf("NormalizeMailbox(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizeSameKey(t *testing.T) {
	same := [][2]string{
		{"prvs=0123abcdef=alice@example.org", "prvs=4567fedcba=alice@example.org"},
		{"SRS0=aaaa=AB=example.com=john@fwd.example", "SRS0=bbbb=CD=example.com=john@fwd.example"},
		{"0100018c5e5a0b11-4e0b1c2d-3e4f-4a5b-8c9d-0e1f2a3b4c5d-000000@amazonses.com",
			"0100018d00aa11bb-99887766-5544-3322-1100-ffeeddccbbaa-000000@amazonses.com"},
		{"bounce-mc.us5_109548965.1234567-6fc5f2a4ce@mail210.atl221.mcdlv.net",
			"bounce-mc.us5_109548965.7654321-0a1b2c3d4e@mail210.atl221.mcdlv.net"},
		{"list-return-123-bob=example.com@lists.example.org", "list-return-124-carol=example.net@lists.example.org"},
	}
	for _, p := range same {
		if a, b := Normalize(p[0]), Normalize(p[1]); a != b {
			t.Errorf("%q → %q and %q → %q should share a key", p[0], a, p[1], b)
		}
	}
	differ := [][2]string{
		{"", "mailer-daemon@example.com"},
		{"alice@example.org", "bob@example.org"},
		{"alice@example.org", "alice@example.net"},
		{"SRS0=aaaa=AB=example.com=john@fwd.example", "SRS0=aaaa=AB=example.com=jane@fwd.example"},
	}
	for _, p := range differ {
		if a, b := Normalize(p[0]), Normalize(p[1]); a == b {
			t.Errorf("%q and %q both normalize to %q", p[0], p[1], a)
		}
	}
}

// The key is never empty, never has upper case, and keeps the sender's
// domain: normalization must not merge senders of different domains.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "a@b", "SRS0=a=b=c=d@e", "prvs=1=x@y", "a+b@c", "0-0-0@x", "A@B.", "+x@y",
		"list-bounces-", "a.b-", "---", "x.#.y", "a..b=", "john2024", "6fc5f2a4ce@x", "#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fast, all := collapseTokens(s), collapseAll(s); fast != all {
			t.Fatalf("collapseTokens(%q) = %q, the full rewrite %q", s, fast, all)
		}
		n := Normalize(s)
		if n == "" || strings.ToLower(n) != n {
			t.Fatalf("Normalize(%q) = %q", s, n)
		}
		if in := strings.ToLower(strings.TrimSpace(s)); strings.Count(in, "@") == 1 && !strings.ContainsAny(in, "<>") {
			want := strings.TrimSuffix(in[strings.IndexByte(in, '@')+1:], ".")
			if got := n[strings.LastIndexByte(n, '@')+1:]; got != want {
				t.Fatalf("Normalize(%q) = %q: domain %q, want %q", s, n, got, want)
			}
		}
	})
}
