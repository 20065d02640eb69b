package whitelist

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/quote"
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
		{ClientName, "/./", "matches host names of unrelated organisations"},
		{ClientName, "/.+/", "matches host names of unrelated organisations"},
		{ClientName, `/\./`, "matches host names of unrelated organisations"},
		{ClientName, `/\.[a-z]+$/`, "matches host names of unrelated organisations"},
		{Sender, "/@/", "matches addresses of unrelated organisations"},
		{Recipient, `/^[^@]+@/`, "matches addresses of unrelated organisations"},
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
		if name := quote.Short(strings.TrimSpace(tt.in)); len(tt.in) < 64 && !strings.Contains(err.Error(), name) &&
			!strings.Contains(err.Error(), quote.Short(tt.in)) {
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

// A regex names one organisation: one that matches the probes of two
// unrelated ones whitelists a population, and is refused naming both.
func TestRegexBreadth(t *testing.T) {
	refused := []struct {
		kind Kind
		re   string
	}{
		{ClientName, `/[a-z]{5}/`},
		{ClientName, `/\.(com|net|org|de)$/`},
		{ClientName, `/[a-z]+\.[a-z]+$/`},
		{ClientName, `/o/`},
		{ClientName, `/\.com$/`},
		{ClientName, `/\.de$/`},
		{ClientName, `/\.co\.uk$/`},
		{ClientName, `/^mail/`},
		{ClientName, `/^smtp/`},
		{ClientName, `/^mx/`},
		{ClientName, `/[0-9]+-[0-9]+/`},
		{Sender, `/^bounce/`},
		{Sender, `/=/`},
		{Recipient, `/\.(com|de)$/`},
		{Recipient, `/^[a-z]+\.[a-z]+@/`},
	}
	for _, tt := range refused {
		_, err := Normalize(tt.kind, tt.re)
		if err == nil || !strings.Contains(err.Error(), "of unrelated organisations") ||
			!strings.Contains(err.Error(), "an entry names one organisation") {
			t.Errorf("Normalize(%s, %s) error = %v, want a refusal naming two organisations", tt.kind, tt.re, err)
		}
	}
	accepted := []struct {
		kind Kind
		re   string
	}{
		{ClientName, `/^mail[0-9]*\.example\.(com|net)$/`},
		{ClientName, `/^mail-[a-z]{2}[0-9]-f[0-9]+\.google\.com$/`},
		{ClientName, `/\.outbound\.protection\.outlook\.com$/`},
		{ClientName, `/^smtp[0-9]*\.kernel\.org$/`},
		{Sender, `/^bounces\+[0-9]+-[a-z0-9]+-.*@em[0-9]+\.sendgrid\.net$/`},
		{Recipient, `/^(abuse|noc)@example\.(com|net)$/`},
	}
	for _, tt := range accepted {
		if _, err := Normalize(tt.kind, tt.re); err != nil {
			t.Errorf("Normalize(%s, %s) = %v, want it accepted", tt.kind, tt.re, err)
		}
	}
	for _, re := range postgreyRegexes {
		if _, err := Normalize(ClientName, re); err != nil {
			t.Errorf("postgrey's %s: %v", re, err)
		}
	}
	// The lists shipped in the Debian package, and the test data, load whole.
	for _, f := range []struct {
		path   string
		format Format
	}{
		{"../packaging/deb/whitelist_clients", FormatClients},
		{"../packaging/deb/whitelist_recipients", FormatRecipients},
		{"testdata/whitelist_clients", FormatClients},
		{"testdata/whitelist_recipients", FormatRecipients},
	} {
		if _, err := readFile(f.path, f.format); err != nil {
			t.Errorf("%s: %v", f.path, err)
		}
	}
}

// The probes stand for unrelated organisations: each is a valid value of
// its kind, no two share a registrable domain, and a regex anchored to
// any one probe's domain, which names that organisation alone, passes.
func TestProbesAreUnrelated(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		pop  population
	}{{ClientName, hosts}, {Sender, addresses}} {
		if n := len(c.pop.probes); n < 18 {
			t.Errorf("%s: %d probes, want about 20", c.kind, n)
		}
		seen := map[string]string{}
		for _, p := range c.pop.probes {
			if got, err := Normalize(c.kind, "="+p); c.kind == ClientName && (err != nil || got != "="+p) {
				t.Errorf("host probe %q is not a lowercase host name: %v", p, err)
			}
			if got, err := Normalize(c.kind, p); c.kind == Sender && (err != nil || got != p) {
				t.Errorf("address probe %q is not a lowercase address: %v", p, err)
			}
			d := registrable(p)
			if other, ok := seen[d]; ok {
				t.Errorf("%s: probes %q and %q share the domain %s", c.kind, other, p, d)
			}
			seen[d] = p
			re := "/[.@]" + regexp.QuoteMeta(d) + "$/"
			if _, err := Normalize(c.kind, re); err != nil {
				t.Errorf("%s: a regex naming only %s is refused: %v", c.kind, d, err)
			}
		}
	}
}

// registrable is a probe's registrable domain: its last two labels, or
// three under the two-label public suffixes the probes use.
func registrable(p string) string {
	if i := strings.LastIndexByte(p, '@'); i >= 0 {
		p = p[i+1:]
	}
	labels := strings.Split(p, ".")
	n := 2
	if sfx := strings.Join(labels[len(labels)-2:], "."); sfx == "co.uk" || sfx == "com.br" || sfx == "co.jp" || sfx == "ac.uk" {
		n = 3
	}
	return strings.Join(labels[len(labels)-n:], ".")
}

// postgreyRegexes are the regexes of postgrey 1.37's whitelist_clients
// (Debian's /usr/share/postgrey/whitelist_clients), which sites bring
// along: each names one organisation, so each passes.
var postgreyRegexes = []string{
	`/^ms-smtp.*\.rr\.com$/`,
	`/^lake.*mta.*\.cox\.net$/`,
	`/^s[cv]\d+pub\.verizon\.net$/`,
	`/^mail\d+\.telekom\.de$/`,
	`/^smtp\d+\.tiscali\.dk$/`,
	`/^fmr\d+\.intel\.com$/`,
	`/^fe\d+\.cox-internet\.com$/`,
	`/^gateway\d+\.np4\.de$/`,
	`/^mail-in-\d+\.arcor-online\.net$/`,
	`/^mailgw.*\.iai\.co\.il$/`,
	`/^mail\d+\.usafisnews\.org$/`,
	`/^odk.fdv.uni-lj.si$/`,
	`/^mta[12].siol.net$/`,
	`/^pim-\d+-\d+\.quickinspirationsmail\.com$/`,
	`/^p?smtp.*\.wxs\.nl$/`,
	`/^smtp\d+\.orange\.fr$/`,
	`/^smtp\d+.citigroup.com$/`,
	`/^mail[12]\.pi\.ws$/`,
	`/^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$/`,
	`/^netmail\d+\.thehartford\.com$/`,
	`/^nse\d+\.abb\.com$/`,
	`/^mail\d+\.msg\.oleane\.net$/`,
	`/^mx\d+\..*\.inode\.at$/`,
	`/^.*?.server.arvato-systems.de$/`,
	`/^(?:mail|fallback-mx)\d+.atl.registeredsite.com$/`,
	`/^outmail\d+\.sctm\.tfbnw\.net$/`,
	`/^m\d+-\d+\.126\.com$/`,
	`/^viefep\d+-int\.chello\.at$/`,
	`/^mx.*\.evanzo-server\.de$/`,
	`/^smtp\d+\.smtpout\.orange\.fr$/`,
	`/^fallback\d+\.mail\.ru$/`,
	`/^fallback\d+\.m\.smailru\.net$/`,
	`/^o\d+\.ntdc\.magisto\.com$/`,
	`/^smarthost.*\.evanzo-server\.de$/`,
}

// What the admin wrote wrong is said plainly: the missing domain is not
// left blank, an empty regex is called one.
func TestValueMessages(t *testing.T) {
	tests := []struct {
		kind     Kind
		in, want string
	}{
		{Recipient, "@", `"@": an address needs a local part before the @; write user@domain, user@ or a domain`},
		{Sender, "@@@", `"@@@": an address needs a local part before the @`},
		{Sender, "@Example.COM", `"@Example.COM": write example.com for the domain and its subdomains, or user@example.com`},
		{ClientName, "//", `"//" is an empty regex`},
		{Sender, "//", `"//" is an empty regex`},
		{Client, strings.Repeat("9", 300), `"` + strings.Repeat("9", 64) + `"... is not an IP address`},
	}
	for _, tt := range tests {
		_, err := Normalize(tt.kind, tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Normalize(%s, %q) error = %v, want %q", tt.kind, tt.in, err, tt.want)
		}
	}
}

// Every refusal of a value or kind matches ErrInvalid, so a command can
// tell the admin's mistake (exit 2) from a failure (exit 1).
func TestRefusalsAreInvalid(t *testing.T) {
	for _, v := range []struct {
		kind Kind
		in   string
	}{{Client, ""}, {Client, "300.1.1.1"}, {Client, "::/0"}, {ClientName, "/(?<=x)y/"}, {Sender, "/o/"},
		{Recipient, "a\x1bb@example.com"}, {Recipient, strings.Repeat("x", 600)}} {
		if _, err := Normalize(v.kind, v.in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%s, %q) = %v, want ErrInvalid", v.kind, v.in, err)
		}
	}
	if _, err := ParseKind("helo"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseKind(helo) = %v, want ErrInvalid", err)
	}
}
