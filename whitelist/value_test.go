package whitelist

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want string
	}{
		{Client, "192.0.2.1", "192.0.2.1"},
		{Client, "192.0.2.1/32", "192.0.2.1"},
		{Client, "192.0.2.77/24", "192.0.2.0/24"}, // host bits cleared
		{Client, "192.0.2", "192.0.2.0/24"},       // postgrey partial IPv4
		{Client, "10.20", "10.20.0.0/16"},         // postgrey 1.37 wrongly makes this /24
		{Client, "10", "10.0.0.0/8"},
		{Client, "10/8", "10.0.0.0/8"},
		{Client, "2001:DB8::1", "2001:db8::1"},
		{Client, "2001:db8:1:2:3::/64", "2001:db8:1:2::/64"},
		{Client, "::ffff:192.0.2.1", "192.0.2.1"},
		{Client, "::ffff:192.0.2.0/120", "192.0.2.0/24"},
		{ClientName, "Mail.Example.COM.", "mail.example.com"},
		{ClientName, "=mx1.example.com", "=mx1.example.com"},
		{ClientName, "*.example.com", ".example.com"},
		{ClientName, ".example.com", ".example.com"},
		{ClientName, `/^smtp\d+\.Example\.com$/`, `/^smtp\d+\.Example\.com$/`},
		{ClientName, "_dmarc-relay.example.com", "_dmarc-relay.example.com"},
		{Sender, "Alice@Example.com", "alice@example.com"},
		{Sender, "bounce@", "bounce@"},
		{Sender, "Example.com", "example.com"},
		{Sender, ".example.com", ".example.com"},
		{Recipient, "postmaster@", "postmaster@"},
		{Recipient, "user+tag@example.com", "user+tag@example.com"},
		{Recipient, `/^alerts-\d+@/`, `/^alerts-\d+@/`},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.kind, tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%s, %q) = %q, %v; want %q", tt.kind, tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeRejects(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want string // substring of the error
	}{
		{Client, "", "empty"},
		{Client, "192.0.2.0/33", "prefix length"},
		{Client, "0.0.0.0/0", "too wide"},
		{Client, "10.0.0.0/7", "too wide"},
		{Client, "2000::/3", "too wide"},
		{Client, "192.0.2.256", "not an IP"},
		{Client, "fe80::1%eth0", "not an IP"},
		{Client, "mail.example.com", "not an IP"},
		{ClientName, "192.0.2.1", "use kind client"},
		{ClientName, "bad host", "not allowed"},
		{ClientName, "a..b", "labels"},
		{ClientName, "/(?<=x)y/", "regular expression"},
		{ClientName, strings.Repeat("a", 64) + ".example", "labels"},
		{Sender, "@example.com", "write example.com"},
		{Sender, "a b@example.com", "local part"},
		{Sender, "user@bad_host!", "not allowed"},
		{Sender, "=example.com", "client names"},
		{Recipient, strings.Repeat("x", 600), "longer than"},
		{"hostmask", "x", "unknown kind"},
	}
	for _, tt := range tests {
		_, err := Normalize(tt.kind, tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Normalize(%s, %q) error = %v; want it to mention %q", tt.kind, tt.in, err, tt.want)
		}
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{"client": Client, "Client_Name": ClientName,
		"hostname": ClientName, "sender": Sender, " recipient ": Recipient} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseKind("helo"); err == nil {
		t.Error("ParseKind(helo) succeeded")
	}
}
