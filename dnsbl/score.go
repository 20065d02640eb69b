package dnsbl

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// subject is one thing lists are asked about.
type subject struct {
	kind  Kind
	id    Identity // for domain subjects
	key   string   // the query name's prefix: reversed address or domain
	class string   // for the reply, as Postfix's $rbl_class
	what  string   // for the reply, as Postfix's $rbl_what
}

// subjects lists the client address and the names that domain lists may be
// asked about. Names that are not plain DNS names (address literals,
// non-ASCII) are skipped rather than queried: DBL answers an IP query with
// an error code, and a malformed name only wastes a query.
func subjects(r *policy.Request) []subject {
	out := make([]subject, 0, 4)
	if a := r.ClientAddress.Unmap(); a.IsValid() {
		out = append(out, subject{kind: KindIP, key: reverse(a), class: "Client host", what: a.String()})
	}
	add := func(id Identity, name, class string) {
		d := strings.ToLower(strings.TrimSuffix(name, "."))
		if validDomain(d) {
			out = append(out, subject{kind: KindDomain, id: id, key: d, class: class, what: d})
		}
	}
	add(Sender, r.SenderDomain(), "Sender address")
	add(Helo, r.HeloName, "Helo command")
	if r.ClientVerified() {
		add(ClientName, r.ClientName, "Client host")
	}
	return out
}

// reverse gives the DNSBL query prefix of an address: reversed octets for
// IPv4, reversed nibbles for IPv6 (RFC 5782 §2.1, §2.4).
func reverse(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		buf := make([]byte, 0, 15)
		for i := 3; i >= 0; i-- {
			buf = strconv.AppendUint(buf, uint64(b[i]), 10)
			buf = append(buf, '.')
		}
		return string(buf[:len(buf)-1])
	}
	const hex = "0123456789abcdef"
	b := a.As16()
	buf := make([]byte, 0, 63)
	for i := 15; i >= 0; i-- {
		buf = append(buf, hex[b[i]&0xf], '.', hex[b[i]>>4], '.')
	}
	return string(buf[:len(buf)-1])
}

// hit is an entry that matched, with what it matched on.
type hit struct {
	pair
	code netip.Addr
}

type scoreCard struct {
	total  float64
	listed []string // display names of matching blocklists
	allows []string // display names of matching allowlists
	allow  bool
	best   *hit // the blocklist hit with the largest weight, named in the reply
}

// score adds each matching entry's weight once, however many subjects or
// reply codes matched it (postscreen_dnsbl_sites semantics). Error codes
// never match.
func score(pairs []pair, answers answerSet) scoreCard {
	var sc scoreCard
	var done []*entry
	for i := range pairs {
		p := &pairs[i]
		if slices.Contains(done, p.e) {
			continue
		}
		code, ok := matchCode(p.e, answers.addrs[p.q])
		if !ok {
			continue
		}
		done = append(done, p.e)
		sc.add(hit{*p, code})
	}
	return sc
}

func (sc *scoreCard) add(h hit) {
	sc.total += h.e.weight
	if h.e.weight < 0 {
		sc.allow = true
		sc.allows = appendOnce(sc.allows, h.e.name)
		return
	}
	sc.listed = appendOnce(sc.listed, h.e.name)
	if sc.best == nil || h.e.weight > sc.best.e.weight {
		sc.best = &h
	}
}

func matchCode(e *entry, addrs []netip.Addr) (netip.Addr, bool) {
	for _, a := range addrs {
		if errorCode(a) == "" && (e.filter == nil || e.filter.match(a)) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func appendOnce(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// reason is the short text for the decision log.
func (sc *scoreCard) reason() string {
	var parts []string
	if len(sc.listed) > 0 {
		parts = append(parts, "listed "+strings.Join(sc.listed, ","))
	}
	if len(sc.allows) > 0 {
		parts = append(parts, "allowlisted "+strings.Join(sc.allows, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + " (score " + strconv.FormatFloat(sc.total, 'g', -1, 64) + ")"
}
