package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// go/spf evaluates a record term by term and stops at the first match, so
// it never sees a syntax error after the mechanism that matched, and it
// accepts some terms RFC 7208 §12's grammar does not (a domain-spec
// without a valid top label, 8-bit or control characters, a CIDR length
// with a leading zero, exp= twice). RFC 7208 §4.6 is explicit: "If there
// are any syntax errors anywhere in the record, check_host() returns
// immediately with the result "permerror", without further
// interpretation." So every record an evaluation fetched is checked here
// against the grammar before its verdict is trusted. pypolicyd-spf's
// pyspf does the same (spf.py, "PermError" raised while parsing the
// whole record).

// errSyntax marks a record that does not follow RFC 7208 §12.
var errSyntax = errors.New("spf: record syntax error")

// modifierName is a modifier's "name =" (RFC 7208 §4.6.1): the "=" comes
// before any ":" or "/", which tells a modifier from a mechanism.
var modifierName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*=`)

// toplabel is RFC 7208 §7.1's: not all numeric, no leading or trailing "-".
var toplabel = regexp.MustCompile(`^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])$`)

// cidrSuffix splits "domain/24//64" into the domain-spec and its
// dual-cidr-length; a "/" not followed by digits stays in the domain-spec,
// where the grammar allows it.
var cidrSuffix = regexp.MustCompile(`^(.*?)((?:/[0-9]+)?(?://[0-9]+)?)$`)

// checkRecord reports the first term of an SPF record that RFC 7208 §12
// does not allow, or nil.
func checkRecord(record string) error {
	for i := 0; i < len(record); i++ {
		if c := record[i]; c != ' ' && (c < 0x21 || c > 0x7e) {
			// Terms are separated by SP only, and every character of a
			// term is printable ASCII (RFC 7208 §12, macro-literal).
			return fmt.Errorf("%w: octet %#x at %d", errSyntax, c, i)
		}
	}
	terms := strings.Fields(record)
	if len(terms) == 0 || !strings.EqualFold(terms[0], "v=spf1") {
		return fmt.Errorf("%w: no version", errSyntax)
	}
	seen := map[string]bool{}
	for _, term := range terms[1:] {
		if err := checkTerm(term, seen); err != nil {
			return fmt.Errorf("%w: %q: %w", errSyntax, term, err)
		}
	}
	return nil
}

func checkTerm(term string, seen map[string]bool) error {
	if modifierName.MatchString(term) {
		name, value, _ := strings.Cut(term, "=")
		name = strings.ToLower(name)
		switch name {
		case "redirect", "exp":
			// RFC 7208 §6: each at most once.
			if seen[name] {
				return errors.New("modifier given twice")
			}
			seen[name] = true
			return checkDomainSpec(value)
		}
		return checkMacroString(value, false)
	}
	if strings.ContainsRune("+-?~", rune(term[0])) {
		term = term[1:]
	}
	i := strings.IndexAny(term, ":/")
	if i < 0 {
		i = len(term)
	}
	name, arg := strings.ToLower(term[:i]), term[i:]
	switch name {
	case "all":
		return noArg(arg)
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") {
			return errors.New("needs a domain-spec")
		}
		return checkDomainSpec(arg[1:])
	case "a", "mx":
		return checkDomainCIDR(arg)
	case "ptr":
		if arg == "" {
			return nil
		}
		if !strings.HasPrefix(arg, ":") {
			return errors.New("bad argument")
		}
		return checkDomainSpec(arg[1:])
	case "ip4", "ip6":
		return checkIP(name, arg)
	}
	return errors.New("unknown mechanism")
}

func noArg(arg string) error {
	if arg != "" {
		return errors.New("takes no argument")
	}
	return nil
}

// checkDomainCIDR checks a / mx: [ ":" domain-spec ] [ dual-cidr-length ].
func checkDomainCIDR(arg string) error {
	m := cidrSuffix.FindStringSubmatch(arg)
	spec, cidr := m[1], m[2]
	if spec != "" {
		if !strings.HasPrefix(spec, ":") {
			return errors.New("bad argument")
		}
		if err := checkDomainSpec(spec[1:]); err != nil {
			return err
		}
	}
	v4, v6, dual := strings.Cut(cidr, "//")
	if !dual {
		v4, v6 = cidr, ""
	} else {
		v6 = "/" + v6
	}
	if err := checkCIDR(v4, 32); err != nil {
		return err
	}
	return checkCIDR(v6, 128)
}

// checkCIDR checks "" or "/" ("0" / %x31-39 0*2DIGIT) up to limit.
func checkCIDR(s string, limit int) error {
	if s == "" {
		return nil
	}
	d := strings.TrimPrefix(s, "/")
	n, err := strconv.Atoi(d)
	if err != nil || strings.Trim(d, "0123456789") != "" || n > limit || (len(d) > 1 && d[0] == '0') {
		return fmt.Errorf("bad CIDR length %q", s)
	}
	return nil
}

// checkIP checks ip4: and ip6: with their networks and lengths.
func checkIP(name, arg string) error {
	if !strings.HasPrefix(arg, ":") {
		return errors.New("needs a network")
	}
	network, cidr, _ := strings.Cut(arg[1:], "/")
	if cidr != "" || strings.HasSuffix(arg, "/") {
		cidr = "/" + cidr
	}
	a, err := netip.ParseAddr(network)
	if err != nil || a.Zone() != "" || (name == "ip4") != a.Is4() {
		return fmt.Errorf("bad %s network %q", name, network)
	}
	if name == "ip4" {
		return checkCIDR(cidr, 32)
	}
	return checkCIDR(cidr, 128)
}

// checkDomainSpec checks domain-spec = macro-string domain-end, where
// domain-end is "." toplabel [ "." ] or a macro-expand (RFC 7208 §7.1).
// The letters c, r and t belong to explanations only (RFC 7208 §7.3).
// A trailing dot after a macro is let through: names are absolute either
// way, and pyspf accepts it.
func checkDomainSpec(s string) error {
	toks, err := parseMacros(strings.TrimSuffix(s, "."), false)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.letter == 'c' || t.letter == 'r' || t.letter == 't' {
			return errors.New("macro letter c, r or t outside an explanation")
		}
	}
	if n := len(toks); n > 0 && toks[n-1].expand {
		return nil
	}
	body := strings.TrimSuffix(s, ".")
	dot := strings.LastIndexByte(body, '.')
	if dot < 0 || !toplabel.MatchString(body[dot+1:]) {
		return fmt.Errorf("domain-spec %q does not end in a valid top label", s)
	}
	return nil
}

// checkMacroString checks a macro-string (RFC 7208 §7.1).
func checkMacroString(s string, explain bool) error {
	_, err := parseMacros(s, explain)
	return err
}
