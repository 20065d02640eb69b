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

// Values that would cover a whole population, cost too much to match, or
// carry control characters are refused, and the error names the value (as
// strconv.Quote writes it, so the error itself prints safely) and why.
func TestNormalizeRefusesBroadAndUnsafe(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want string // substring of the error
	}{
		// A domain pattern needs two labels.
		{ClientName, "com", "at least 2 labels"},
		{ClientName, "COM.", "at least 2 labels"},
		{ClientName, ".com", "at least 2 labels"},
		{ClientName, "*.org", "at least 2 labels"},
		{Sender, "com", "at least 2 labels"},
		{Recipient, ".net", "at least 2 labels"},
		// Regexes that match everyone.
		{ClientName, "/.*/", "matches the empty string"},
		{ClientName, "/^/", "matches the empty string"},
		{ClientName, "/x*/", "matches the empty string"},
		{Sender, "/(foo)?/", "matches the empty string"},
		{ClientName, "/./", "matches every one"},
		{ClientName, "/.+/", "matches every one"},
		{ClientName, `/\./`, "matches every one"},
		{ClientName, `/\.[a-z]+$/`, "matches every one"},
		{Sender, "/@/", "matches every one"},
		{Recipient, `/^[^@]+@/`, "matches every one"},
		// Regexes that cost too much.
		{ClientName, "/" + strings.Repeat("a", 257) + "/", "longer than 256 bytes"},
		{ClientName, "/(mail|smtp){300}/", "too large"},
		{Sender, "/x{1000}/", "too large"},
		// Control characters and bytes that are not UTF-8, in every part.
		{ClientName, "mail.example.com\x1b[2J", "control character U+001B"},
		{Client, "192.0.2.1\n", "control character U+000A"},
		{ClientName, "/^mx\t1\\.example\\.com$/", "control character U+0009"},
		{Sender, "a\x00b@example.com", "control character U+0000"},
		{Recipient, "bob\x7f@example.com", "control character U+007F"},
		{Sender, "a\u0085b@example.com", "control character U+0085"},
		{Recipient, "bob\r@", "control character U+000D"},
		{Sender, "b\xffob@example.com", "not valid UTF-8"},
		// Unicode that lowercases to ASCII is not an ASCII host name.
		{ClientName, "\u212Aelvin.example", "not allowed in a host name"},
		{Sender, "bob@\u212Aelvin.example", "not allowed in a host name"},
		// A key must parse again: lowercasing may lengthen it.
		{Recipient, strings.Repeat("\u023a", 255) + "@", "once lowercased"},
	}
	for _, tt := range tests {
		_, err := Normalize(tt.kind, tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Normalize(%s, %q) error = %v; want it to mention %q", tt.kind, tt.in, err, tt.want)
			continue
		}
		if name := quoteShort(strings.TrimSpace(tt.in)); len(tt.in) < 64 && !strings.Contains(err.Error(), name) &&
			!strings.Contains(err.Error(), quoteShort(tt.in)) {
			t.Errorf("Normalize(%s, %q) error %q does not name the value", tt.kind, tt.in, err)
		}
	}
}

// What the new limits must leave alone: specific regexes, one-label names
// where they name one host or address, and non-ASCII local parts.
func TestNormalizeStillAccepts(t *testing.T) {
	tests := []struct {
		kind     Kind
		in, want string
	}{
		{ClientName, `/^mail[0-9]+\.example\.net$/`, `/^mail[0-9]+\.example\.net$/`},
		{ClientName, `/\.mail\.example\.org$/`, `/\.mail\.example\.org$/`},
		{ClientName, "/[a-z]{2}[0-9]{3}\\.example/", "/[a-z]{2}[0-9]{3}\\.example/"},
		{Sender, `/^bounce-[0-9]+@example\.com$/`, `/^bounce-[0-9]+@example\.com$/`},
		{ClientName, "=localhost", "=localhost"},
		{Recipient, "Root@LocalHost", "root@localhost"},
		{Recipient, "Jürgen@example.de", "jürgen@example.de"},
		{ClientName, "example.co.uk", "example.co.uk"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.kind, tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%s, %q) = %q, %v; want %q", tt.kind, tt.in, got, err, tt.want)
		}
	}
}
