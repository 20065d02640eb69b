package greylist

import (
	"strings"
	"testing"
)

// FuzzSenderKey checks the promise Normalize makes (its doc comment): the
// parts of a sender that change from one message to the next do not change
// its key. The BATV tag (draft-levine-smtp-batv-01 §4.1, "prvs=TAG=local"),
// the SRS hash and timestamp (Shevek, "Sender Rewriting Scheme", SRS0
// "SRS0=HASH=TT=domain=local") and a "+extension" are varied while the rest
// of the sender stays the same. Whatever the input, the key is never empty
// and never longer than the lowercased sender, so a row's key column is
// bounded by the sender Postfix sent.
func FuzzSenderKey(f *testing.F) {
	for _, s := range [][4]string{
		{"alice", "example.org", "0123abcdef", "4567fedcba"},
		{"john", "forwarder.example", "xk3a", "7u"},
		{"python-list-bounces", "python.org", "bob=example.com", "carol=example.net"},
		{"bounces-123456-2", "sparkpostmail1.com", "19001abcdefgh", "1a"},
		{"list-return-123-bob=example.com", "lists.example.org", "0", "ffff"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, local, domain, tag1, tag2 string) {
		raw := local + "@" + domain
		key := Normalize(raw)
		if in := strings.ToLower(strings.TrimSpace(raw)); key == "" || len(key) > max(len(in), len(NullSender)) {
			t.Fatalf("Normalize(%q) = %q: empty or longer than the sender", raw, key)
		}
		if local == "" || strings.ContainsAny(local, "\n") || strings.ContainsAny(domain, "@=\n") || domain == "" {
			return
		}
		tag1, tag2 = token(tag1), token(tag2)
		sameKey(t, "prvs="+tag1+"="+raw, "prvs="+tag2+"="+raw)
		sameKey(t, "SRS0="+tag1+"="+tag2+"="+domain+"="+raw, "SRS0="+tag2+"="+tag1+"="+domain+"="+raw)
		if plainLocal(local) {
			sameKey(t, local+"+"+tag1+"@"+domain, local+"+"+tag2+"@"+domain)
			sameKey(t, raw, local+"+"+tag1+"@"+domain)
		}
	})
}

func sameKey(t *testing.T, a, b string) {
	t.Helper()
	if ka, kb := Normalize(a), Normalize(b); ka != kb {
		t.Fatalf("one sender, two keys: %q → %q, %q → %q", a, ka, b, kb)
	}
}

// token keeps the characters a BATV tag or SRS hash is made of (letters
// and digits), never empty.
func token(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
	if s == "" {
		return "0"
	}
	return s
}

// plainLocal reports whether l is an ordinary local part, one that
// Normalize reads as neither BATV nor SRS and that has no "+" or "=" of
// its own: the "+extension" rule applies to it alone.
func plainLocal(l string) bool {
	if strings.HasPrefix(strings.ToLower(l), "srs") {
		return false
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
