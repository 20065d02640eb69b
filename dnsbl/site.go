package dnsbl

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// site is one parsed list entry in postscreen_dnsbl_sites syntax,
// "zone[=filter][*weight]" (postconf(5)). The same zone may appear in
// several entries with different filters and weights.
type site struct {
	zone   string  // lowercased, no trailing dot
	filter *filter // nil: any listing code
	weight float64 // default 1; negative means allowlist
}

func parseSite(s string) (site, error) {
	st := site{weight: 1}
	zone, tail := cutSite(s)
	if i := strings.LastIndexByte(tail, '*'); i >= 0 {
		w, err := strconv.ParseFloat(tail[i+1:], 64)
		// NaN would poison the whole score sum and ±Inf outweigh every list.
		if err != nil || w == 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return st, fmt.Errorf("weight %q is not a finite non-zero number", tail[i+1:])
		}
		st.weight, tail = w, tail[:i]
	}
	if f, ok := strings.CutPrefix(tail, "="); ok {
		fl, err := parseFilter(f)
		if err != nil {
			return st, err
		}
		st.filter = &fl
	}
	st.zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	if !validDomain(st.zone) {
		return st, fmt.Errorf("zone is not a domain name: %s", zoneProblem(st.zone))
	}
	return st, nil
}

// cutSite splits a site into its zone, as written, and the "=filter" and
// "*weight" after it: the weight follows the last '*', the filter the
// first '=' before it.
func cutSite(s string) (zone, tail string) {
	s = strings.TrimSpace(s)
	end := len(s)
	if i := strings.LastIndexByte(s, '*'); i >= 0 {
		end = i
	}
	if i := strings.IndexByte(s[:end], '='); i >= 0 {
		end = i
	}
	return s[:end], s[end:]
}

// zoneProblem says why zone is not a domain name without quoting it: the
// zone of a Spamhaus DQS list holds the key, and that of a list given a
// name is secret too, while the error is logged and printed by config
// check. It names the label by its position and the character at fault.
func zoneProblem(zone string) string {
	labels := strings.Split(zone, ".")
	switch {
	case zone == "":
		return "it is empty"
	case len(zone) > 253:
		return "it is longer than 253 characters"
	case len(labels) < 2:
		return "it has a single label"
	}
	if _, err := netip.ParseAddr(zone); err == nil {
		return "it is an address"
	}
	for i, l := range labels {
		switch {
		case l == "":
			return fmt.Sprintf("label %d is empty", i+1)
		case len(l) > 63:
			return fmt.Sprintf("label %d is longer than 63 characters", i+1)
		case !validLabel(l):
			return fmt.Sprintf("label %d has %q, not a letter, digit, '-' or '_'", i+1, badRune(l))
		}
	}
	return "it is not valid"
}

// badRune is the first character of l that validLabel refuses.
func badRune(l string) rune {
	for _, r := range l {
		if !validLabel(string(r)) {
			return r
		}
	}
	return 0
}

// filter matches reply addresses: four octet patterns, each a set of
// numbers and ranges ("127.0.0.[2..11]", "127.0.[0..255].[1;3]").
type filter [4][]octetRange

type octetRange struct{ lo, hi uint8 }

func parseFilter(s string) (filter, error) {
	var f filter
	parts := splitOctets(s)
	if len(parts) != 4 {
		return f, fmt.Errorf("filter %q: want d.d.d.d", s)
	}
	for i, p := range parts {
		r, err := parseOctet(p)
		if err != nil {
			return f, fmt.Errorf("filter %q: %w", s, err)
		}
		f[i] = r
	}
	return f, nil
}

// splitOctets splits at the dots outside brackets: "127.0.0.[2..11]".
func splitOctets(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// parseOctet reads "2", "[2..11]" or "[1;3;5..7]".
func parseOctet(p string) ([]octetRange, error) {
	if !strings.HasPrefix(p, "[") {
		n, err := octet(p)
		return []octetRange{{n, n}}, err
	}
	if !strings.HasSuffix(p, "]") || len(p) < 3 {
		return nil, fmt.Errorf("unbalanced brackets in %q", p)
	}
	var rs []octetRange
	for _, item := range strings.Split(p[1:len(p)-1], ";") {
		lo, hi, isRange := strings.Cut(item, "..")
		a, err := octet(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = octet(hi); err != nil {
				return nil, err
			}
		}
		if b < a {
			return nil, fmt.Errorf("range %q runs backwards", item)
		}
		rs = append(rs, octetRange{a, b})
	}
	return rs, nil
}

func octet(s string) (uint8, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 8)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number 0..255", s)
	}
	return uint8(n), nil
}

func (f *filter) match(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	for i, rs := range f {
		if !inRanges(b[i], rs) {
			return false
		}
	}
	return true
}

func inRanges(v uint8, rs []octetRange) bool {
	for _, r := range rs {
		if v >= r.lo && v <= r.hi {
			return true
		}
	}
	return false
}

// errorCode names a reply that reports a problem with the query rather
// than a listing, or "" for a possible listing. These are never listings,
// whatever filter an admin wrote (Spamhaus's "return codes" pages and
// dnswl.org's documentation of 127.0.X.255):
//   - anything outside 127.0.0.0/8 (a wildcarding resolver or a dead zone);
//   - 127.255.255.0/24, Spamhaus errors (.252 typo in the zone name, .254
//     query through a public resolver, .255 over the query limit);
//   - 127.0.X.255, DBL's "IP queries not allowed" (127.0.1.255) and
//     dnswl.org's "over quota" (127.0.X.255);
//   - 127.0.0.1, which RFC 5782 §5 forbids as a listing and URIBL-style
//     lists return for refused queries.
func errorCode(a netip.Addr) string {
	if !a.Is4() {
		return "not an IPv4 reply"
	}
	b := a.As4()
	switch {
	case b[0] != 127:
		return "reply outside 127.0.0.0/8"
	case b[1] == 255 && b[2] == 255:
		return spamhausError(b[3])
	case b[1] == 0 && b[3] == 255:
		return "query refused (127.0.X.255: over quota or wrong query type)"
	case a == netip.AddrFrom4([4]byte{127, 0, 0, 1}):
		return "query refused (127.0.0.1)"
	}
	return ""
}

func spamhausError(last byte) string {
	switch last {
	case 252:
		return "typing error in the zone name (127.255.255.252)"
	case 254:
		return "query through a public or open resolver (127.255.255.254)"
	case 255:
		return "excessive number of queries (127.255.255.255)"
	}
	return "error code in 127.255.255.0/24"
}

// validDomain accepts a name that can be looked up in a list: ASCII labels
// of letters, digits, hyphen and underscore, at least two labels, not an
// address literal. HELO names are client-supplied, so anything else is
// skipped instead of being queried.
func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if len(l) == 0 || len(l) > 63 || !validLabel(l) {
			return false
		}
	}
	return true
}

func validLabel(l string) bool {
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// errNoAnswer marks a list reply that was an error code, for the health
// counter and the log.
var errNoAnswer = errors.New("dnsbl: list answered with an error code")
