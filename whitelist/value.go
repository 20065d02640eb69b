package whitelist

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// form is the shape of a value; it decides which index holds it.
type form uint8

const (
	formPrefix  form = iota // client: an address or a prefix
	formExact               // client_name "=mail.example.com": that name only
	formDomain              // "example.com": the domain and all its subdomains
	formSub                 // ".example.com" or "*.example.com": subdomains only
	formRegex               // "/re/": unanchored, case-insensitive (postgrey's qr{$1}i)
	formAddress             // "user@example.com", also matching user+ext@example.com
	formLocal               // "user@": that local part at any domain
)

// pattern is a parsed value. key is its canonical text: what the database
// stores, what duplicates are detected by, and the index key.
type pattern struct {
	form   form
	key    string
	prefix netip.Prefix
	re     *regexp.Regexp
}

// Limits that keep a typo from whitelisting the world. A /8 is already a
// sixteenth of a million hosts; anything wider is surely a mistake.
const (
	maxValueLen = 512
	minBits4    = 8
	minBits6    = 16
)

// Normalize validates value as a kind entry and returns its canonical form
// (lowercased, prefixes masked, partial IPv4 expanded), as stored.
func Normalize(k Kind, value string) (string, error) {
	p, err := parseValue(k, value)
	return p.key, err
}

func parseValue(k Kind, v string) (pattern, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return pattern{}, errors.New("empty value")
	}
	if len(v) > maxValueLen {
		return pattern{}, fmt.Errorf("value longer than %d bytes", maxValueLen)
	}
	switch k {
	case Client:
		return parseClient(v)
	case ClientName:
		return parseHostPattern(v)
	case Sender, Recipient:
		return parseMailPattern(v)
	}
	return pattern{}, fmt.Errorf("unknown kind %q", k)
}

// parseClient accepts an IPv4 or IPv6 address, a prefix, and postgrey's
// partial IPv4 ("192.0.2" is 192.0.2.0/24, "10.1" is 10.1.0.0/16; postgrey
// 1.37 wrongly makes "a.b" a /24). Host bits of a prefix are cleared.
func parseClient(v string) (pattern, error) {
	addrText, bitsText, hasBits := strings.Cut(v, "/")
	implied := -1
	if !strings.Contains(addrText, ":") {
		addrText, implied = padIPv4(addrText)
	}
	a, err := netip.ParseAddr(addrText)
	if err != nil || a.Zone() != "" {
		return pattern{}, fmt.Errorf("%q is not an IP address, prefix or partial IPv4 address", v)
	}
	bits := a.BitLen()
	if implied >= 0 {
		bits = implied
	}
	if hasBits {
		if bits, err = strconv.Atoi(bitsText); err != nil || bits < 0 || bits > a.BitLen() {
			return pattern{}, fmt.Errorf("%q: prefix length must be 0..%d", v, a.BitLen())
		}
	}
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return clientPattern(v, netip.PrefixFrom(a, bits).Masked())
}

func clientPattern(v string, p netip.Prefix) (pattern, error) {
	min := minBits6
	if p.Addr().Is4() {
		min = minBits4
	}
	if p.Bits() < min {
		return pattern{}, fmt.Errorf("%q: prefix /%d is too wide (at least /%d)", v, p.Bits(), min)
	}
	key := p.String()
	if p.IsSingleIP() {
		key = p.Addr().String()
	}
	return pattern{form: formPrefix, key: key, prefix: p}, nil
}

// padIPv4 completes a partial dotted quad with zero octets and returns the
// prefix length it implies, or -1 for a complete address.
func padIPv4(s string) (string, int) {
	n := strings.Count(s, ".") + 1
	if n >= 4 || s == "" {
		return s, -1
	}
	return s + strings.Repeat(".0", 4-n), 8 * n
}

// parseHostPattern parses a client_name value: "=host" (exact), ".domain"
// or "*.domain" (subdomains only), "domain" (it and its subdomains, as in
// postgrey) or "/regex/".
func parseHostPattern(v string) (pattern, error) {
	if re, ok, err := parseRegex(v); ok {
		return re, err
	}
	f, name := formDomain, v
	switch {
	case strings.HasPrefix(v, "="):
		f, name = formExact, v[1:]
	case strings.HasPrefix(v, "*."):
		f, name = formSub, v[2:]
	case strings.HasPrefix(v, "."):
		f, name = formSub, v[1:]
	}
	name, err := normalizeHost(name)
	if err != nil {
		return pattern{}, fmt.Errorf("%q: %w", v, err)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return pattern{}, fmt.Errorf("%q is an address, not a host name: use kind client", v)
	}
	return pattern{form: f, key: hostKey(f, name)}, nil
}

func hostKey(f form, name string) string {
	switch f {
	case formExact:
		return "=" + name
	case formSub:
		return "." + name
	}
	return name
}

// normalizeHost lowercases a DNS name and checks its syntax (RFC 1035
// lengths; underscores allowed because they appear in real PTR names).
func normalizeHost(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if s == "" || len(s) > 253 {
		return "", errors.New("host name must have 1..253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("host name labels must have 1..63 characters")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("character %q is not allowed in a host name", c)
			}
		}
	}
	return s, nil
}

// parseMailPattern parses a sender or recipient value in postgrey's
// whitelist_recipients syntax: "user@domain", "user@" (any domain),
// "domain" (it and its subdomains), plus ".domain" (subdomains only) and
// "/regex/" matched against the whole address.
func parseMailPattern(v string) (pattern, error) {
	if re, ok, err := parseRegex(v); ok {
		return re, err
	}
	v = strings.ToLower(v)
	local, domain, hasAt := strings.Cut(v, "@")
	if !hasAt {
		p, err := parseHostPattern(v)
		if err == nil && p.form == formExact {
			err = fmt.Errorf("%q: \"=\" is for client names; write user@domain or domain", v)
		}
		return p, err
	}
	if err := checkLocal(local); err != nil {
		return pattern{}, fmt.Errorf("%q: %w", v, err)
	}
	if local == "" {
		return pattern{}, fmt.Errorf("%q: write %s for the domain and its subdomains, or user@%s", v, domain, domain)
	}
	if domain == "" {
		return pattern{form: formLocal, key: local + "@"}, nil
	}
	d, err := normalizeHost(domain)
	if err != nil {
		return pattern{}, fmt.Errorf("%q: %w", v, err)
	}
	return pattern{form: formAddress, key: local + "@" + d}, nil
}

func checkLocal(local string) error {
	if strings.ContainsAny(local, "@ \t\"<>") {
		return errors.New("local part must not contain '@', blanks, quotes or angle brackets")
	}
	return nil
}

// parseRegex recognizes postgrey's "/regex/" (ok is false for anything else).
// Patterns are RE2, compiled case-insensitive like postgrey's qr{$1}i; Perl
// features RE2 lacks (lookaround, backreferences) are reported, not ignored.
func parseRegex(v string) (pattern, bool, error) {
	if len(v) < 3 || v[0] != '/' || v[len(v)-1] != '/' {
		return pattern{}, false, nil
	}
	re, err := regexp.Compile("(?i)" + v[1:len(v)-1])
	if err != nil {
		return pattern{}, true, fmt.Errorf("%s: bad regular expression (RE2 syntax): %w", v, err)
	}
	return pattern{form: formRegex, key: v, re: re}, true, nil
}
