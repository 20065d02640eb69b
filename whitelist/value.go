package whitelist

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mxpolicyd/mxpolicyd/internal/quote"
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
	// minLabels is the fewest labels a domain pattern may have: "com" or
	// "*.com" would cover a whole top-level domain. A two-label public
	// suffix ("co.uk") cannot be told from a domain without the Public
	// Suffix List (https://publicsuffix.org/list/), so it passes.
	minLabels = 2
)

// Regexes are tried one by one on every request that reaches them, so the
// cost of each is bounded: RE2 runs in time linear in the input times the
// size of the compiled program (https://github.com/google/re2/wiki/WhyRE2),
// so the program size is what is capped, the source length only to keep
// errors short.
const (
	maxRegexLen  = 256
	maxRegexInst = 1000
)

// Probes stand for the population a regex entry must not cover: a
// legitimate entry names one organisation's hosts or addresses, so a
// regex that matches probes of two unrelated organisations (each probe's
// registrable domain belongs to a different one) is refused. The host
// probes are the kinds of names real clients have: large mail providers'
// outbound hosts, bulk senders, dynamic and hosting pools, and role names
// (mail., mx., smtp.) under ccTLDs and two-label suffixes (co.uk, com.br,
// co.jp). The address probes are the kinds of envelope addresses mail
// carries: personal mailboxes, role accounts, bounce addresses with VERP,
// SRS (draft-mengwong-sender-rewrite) and BATV (draft-levine-smtp-batv)
// tags, at as many unrelated domains. A regex broad enough to match any
// two of them surely matches many more names than its author meant.
var (
	hosts = population{noun: "host names", example: `/^mail[0-9]*\.example\.com$/`, probes: []string{
		"mail-wm1-f54.google.com",
		"mail-am6eur05on2094.outbound.protection.outlook.com",
		"sonic305-21.consmr.mail.ir2.yahoo.com",
		"o1.ptr2462.sendgrid.net",
		"mail180-12.suw21.mcdlv.net",
		"out3-smtp.messagingengine.com",
		"mout-xforward.gmx.net",
		"mout01.posteo.de",
		"p5dd2a6c1.dip0.t-ipconnect.de",
		"static.88-198-24-11.clients.your-server.de",
		"c-73-162-5-201.hsd1.ca.comcast.net",
		"host81-155-12-3.range81-155.btcentralplus.com",
		"ec2-3-121-45-6.eu-central-1.compute.amazonaws.com",
		"mailout.bbc.co.uk",
		"smtp2.tesco.co.uk",
		"forward501a.mail.yandex.net",
		"mta-out1.rakuten.co.jp",
		"smtp.kernel.org",
		"mx1.riseup.net",
		"mail.correios.com.br",
		"mx.uni-heidelberg.de",
		"bendel.debian.org",
	}}
	addresses = population{noun: "addresses", example: `/^bounce-[0-9]+@example\.com$/`, probes: []string{
		"alice.smith@gmail.com",
		"j.doe@outlook.com",
		"0102018d2f3a4b5c-1a2b3c4d-000000@eu-west-1.amazonses.com",
		"bounces+2462135-a1b2-bob=example.org@em3141.sendgrid.net",
		"bounce-mc.us5_12345678.987654-bob=example.net@mail180.suw21.mcdlv.net",
		"srs0=ab12=xy=example.org=bob@pobox.com",
		"prvs=1234abcd5=sales@tesco.co.uk",
		"noreply@github.com",
		"ivan.petrov@yandex.ru",
		"marie.dupont@orange.fr",
		"newsletter@spiegel.de",
		"user123@yahoo.co.jp",
		"service@paypal.com",
		"debian-devel-request@lists.debian.org",
		"kontakt@firma-mueller.at",
		"billing@stripe.com",
		"postmaster@uni-heidelberg.de",
		"joao.silva@uol.com.br",
		"info@bbc.co.uk",
		"h.meier@posteo.de",
	}}
)

// population is one kind's probes, and how its refusal speaks of them.
type population struct {
	probes  []string
	noun    string // what a probe is
	example string // a regex that names one organisation
}

// Normalize validates value as a kind entry and returns its canonical form
// (lowercased, prefixes masked, partial IPv4 expanded), as stored.
// Its errors match ErrInvalid.
func Normalize(k Kind, value string) (string, error) {
	p, err := parseValue(k, value)
	if err != nil {
		return "", invalidError{err}
	}
	return p.key, nil
}

func parseValue(k Kind, v string) (pattern, error) {
	if err := checkText(v); err != nil {
		return pattern{}, fmt.Errorf("%s: %w", quote.Short(v), err)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return pattern{}, errors.New("empty value")
	}
	if len(v) > maxValueLen {
		return pattern{}, fmt.Errorf("%s: value longer than %d bytes", quote.Short(v), maxValueLen)
	}
	var (
		p   pattern
		err error
	)
	switch k {
	case Client:
		p, err = parseClient(v)
	case ClientName:
		p, err = parseHostPattern(v)
	case Sender, Recipient:
		p, err = parseMailPattern(v)
	default:
		return pattern{}, fmt.Errorf("unknown kind %s", quote.Short(string(k)))
	}
	// Lowercasing can lengthen a string (U+023A is 2 bytes, its lowercase
	// 3), and a stored key must parse again.
	if err == nil && len(p.key) > maxValueLen {
		return pattern{}, fmt.Errorf("%s: value longer than %d bytes once lowercased", quote.Short(v), maxValueLen)
	}
	return p, err
}

// checkText refuses what has no place in a value or comment and would
// corrupt a terminal or a log line when printed: bytes that are not UTF-8
// and control characters (C0, DEL and C1, unicode.IsControl).
func checkText(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return fmt.Errorf("byte %d is not valid UTF-8", i)
			}
		}
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U at byte %d is not allowed", r, i)
		}
	}
	return nil
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
		return pattern{}, fmt.Errorf("%s is not an IP address, prefix or partial IPv4 address", quote.Short(v))
	}
	bits := a.BitLen()
	if implied >= 0 {
		bits = implied
	}
	if hasBits {
		if bits, err = strconv.Atoi(bitsText); err != nil || bits < 0 || bits > a.BitLen() {
			return pattern{}, fmt.Errorf("%s: prefix length must be 0..%d", quote.Short(v), a.BitLen())
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
		return pattern{}, fmt.Errorf("%s: prefix /%d is too wide (at least /%d)", quote.Short(v), p.Bits(), min)
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
	if re, ok, err := parseRegex(v, hosts); ok {
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
		return pattern{}, fmt.Errorf("%s: %w", quote.Short(v), err)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return pattern{}, fmt.Errorf("%s is an address, not a host name: use kind client", quote.Short(v))
	}
	if f != formExact && strings.Count(name, ".")+1 < minLabels {
		return pattern{}, fmt.Errorf("%s would cover the whole domain %s: a domain needs at least %d labels (example.com)",
			quote.Short(v), name, minLabels)
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

// normalizeHost checks a DNS name's syntax (RFC 1035 lengths; underscores
// allowed because they appear in real PTR names) and lowercases it. The
// check comes first: strings.ToLower folds the Kelvin sign U+212A to an
// ASCII "k", which must be refused, not read as one.
func normalizeHost(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return "", errors.New("host name must have 1..253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("host name labels must have 1..63 characters")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("character %q is not allowed in a host name", c)
			}
		}
	}
	return strings.ToLower(s), nil
}

// parseMailPattern parses a sender or recipient value in postgrey's
// whitelist_recipients syntax: "user@domain", "user@" (any domain),
// "domain" (it and its subdomains), plus ".domain" (subdomains only) and
// "/regex/" matched against the whole address.
func parseMailPattern(v string) (pattern, error) {
	if re, ok, err := parseRegex(v, addresses); ok {
		return re, err
	}
	local, domain, hasAt := strings.Cut(v, "@")
	local = strings.ToLower(local) // the domain is lowercased by normalizeHost
	if !hasAt {
		p, err := parseHostPattern(v)
		if err == nil && p.form == formExact {
			err = fmt.Errorf("%s: \"=\" is for client names; write user@domain or domain", quote.Short(v))
		}
		return p, err
	}
	if err := checkLocal(local); err != nil {
		return pattern{}, fmt.Errorf("%s: %w", quote.Short(v), err)
	}
	if local == "" {
		return pattern{}, fmt.Errorf("%s: %s", quote.Short(v), noLocalPart(domain))
	}
	if domain == "" {
		return pattern{form: formLocal, key: local + "@"}, nil
	}
	d, err := normalizeHost(domain)
	if err != nil {
		return pattern{}, fmt.Errorf("%s: %w", quote.Short(v), err)
	}
	return pattern{form: formAddress, key: local + "@" + d}, nil
}

// noLocalPart says what to write instead of "@domain": the domain alone,
// or user@domain; without a usable domain, what the forms are.
func noLocalPart(domain string) string {
	d, err := normalizeHost(domain)
	if domain == "" || err != nil {
		return "an address needs a local part before the @; write user@domain, user@ or a domain"
	}
	return fmt.Sprintf("write %s for the domain and its subdomains, or user@%s", d, d)
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
// A regex that would match (nearly) everyone, or cost too much to run, is
// refused; pop stands for the kind's population.
func parseRegex(v string, pop population) (pattern, bool, error) {
	if len(v) < 2 || v[0] != '/' || v[len(v)-1] != '/' {
		return pattern{}, false, nil
	}
	if len(v) == 2 {
		return pattern{}, true, fmt.Errorf("%s is an empty regex: write the pattern between the slashes", quote.Short(v))
	}
	src := "(?i)" + v[1:len(v)-1]
	if len(v)-2 > maxRegexLen {
		return pattern{}, true, fmt.Errorf("%s: regular expression longer than %d bytes", quote.Short(v), maxRegexLen)
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return pattern{}, true, fmt.Errorf("%s: bad regular expression (RE2 syntax): %w", quote.Short(v), err)
	}
	if n := progSize(src); n > maxRegexInst {
		return pattern{}, true, fmt.Errorf("%s: regular expression too large (%d instructions compiled, at most %d)",
			quote.Short(v), n, maxRegexInst)
	}
	if err := checkBreadth(re, pop); err != nil {
		return pattern{}, true, fmt.Errorf("%s %w", quote.Short(v), err)
	}
	return pattern{form: formRegex, key: v, re: re}, true, nil
}

// checkBreadth refuses a regex that matches the empty string (so, being
// unanchored, every name) or probes of two unrelated organisations.
func checkBreadth(re *regexp.Regexp, pop population) error {
	if re.MatchString("") {
		return errors.New("matches the empty string, so it would match everyone: anchor it or make it specific")
	}
	var hit []string
	for _, p := range pop.probes {
		if re.MatchString(p) {
			hit = append(hit, p)
		}
		if len(hit) == 2 {
			return fmt.Errorf("matches %s of unrelated organisations, %s and %s: an entry names one organisation; "+
				"anchor the regex to its domain, like %s", pop.noun, hit[0], hit[1], pop.example)
		}
	}
	return nil
}

// progSize is the number of instructions src compiles to, parsed and
// compiled as regexp.Compile does (regexp/regexp.go compile). src has
// already compiled, so the errors cannot happen.
func progSize(src string) int {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return 0
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0
	}
	return len(prog.Inst)
}
