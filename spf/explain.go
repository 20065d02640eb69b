package spf

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// maxExplanation bounds the domain's explanation in our reply: an SMTP
// reply line is at most 512 octets with its code (RFC 5321 §4.5.3.1.5).
const maxExplanation = 256

// explain returns the domain's own explanation of a fail (RFC 7208 §6.2),
// expanded and made one printable ASCII line, or "" when the domain
// publishes none or it cannot be used: then our template answers. go/spf
// ignores exp=, so this reads the records the evaluation fetched (dns is
// its memo) and asks only for the explanation's TXT.
func (c *Checker) explain(ctx context.Context, dns *memoResolver, env macroEnv) string {
	domain, exp := expSource(ctx, dns, env)
	if exp == "" {
		return ""
	}
	env.domain = domain
	name, err := expandMacros(exp, env, false)
	if err != nil || name == "" {
		return ""
	}
	name = truncateName(name)
	txts, err := dns.LookupTXT(ctx, name)
	if err != nil || len(txts) != 1 {
		// RFC 7208 §6.2: a DNS error, no record or more than one: "proceed
		// as if no exp modifier was given".
		return ""
	}
	env.ptr = func() string { return validatedName(ctx, dns, env.ip, domain) }
	text, err := expandMacros(txts[0], env, true)
	if err != nil {
		return "" // a syntax error in the explanation string: the same
	}
	// The text is the domain's, fetched from its DNS, and goes out in our
	// reply: RFC 7208 §6.2, "Software SHOULD make it clear that the
	// explanation string comes from a third party", prepending
	// "%{o} explains: " as in its example (§8.4).
	return oneLine(env.value('o') + " explains: " + text)
}

// truncateName drops labels from the left of an expanded name longer
// than 253 characters until it fits (RFC 7208 §7.3).
func truncateName(name string) string {
	name = strings.TrimSuffix(name, ".")
	for len(name) > 253 {
		_, rest, ok := strings.Cut(name, ".")
		if !ok {
			return name
		}
		name = rest
	}
	return name
}

// expSource finds the record whose exp= explains the fail and returns its
// domain and the exp= domain-spec. A fail comes from the checked domain's
// record unless that record handed over to redirect= (RFC 7208 §6.1), and
// then the target's exp= counts, never the original's (§6.2); an exp= of
// an include:d record never does. go/spf does not say which term matched,
// so: a record with "all" never reaches its redirect=; one with no "-"
// term cannot fail by itself; otherwise the evaluation went through the
// redirect if it fetched the target's record.
func expSource(ctx context.Context, dns *memoResolver, env macroEnv) (string, string) {
	domain := env.domain
	for range 10 { // RFC 7208 §4.6.4: ten lookups at most, redirects included
		rec := dns.cachedRecord(domain)
		if rec == "" {
			return "", ""
		}
		exp, redirect, hasAll, canFail := scanRecord(rec)
		if redirect == "" || hasAll {
			return domain, exp
		}
		env.domain = domain
		target, err := expandMacros(redirect, env, false)
		if err != nil {
			return "", ""
		}
		if canFail && !dns.asked("TXT", target) {
			return domain, exp
		}
		domain = target
	}
	return "", ""
}

// scanRecord reads a checked record's exp= and redirect= values, whether
// it has an "all" mechanism, and whether any term has the "-" qualifier.
func scanRecord(rec string) (exp, redirect string, hasAll, canFail bool) {
	for _, term := range strings.Fields(rec)[1:] {
		lower := strings.ToLower(term)
		switch {
		case strings.HasPrefix(lower, "exp="):
			exp = term[len("exp="):]
		case strings.HasPrefix(lower, "redirect="):
			redirect = term[len("redirect="):]
		case strings.TrimLeft(lower, "+-?~") == "all":
			hasAll = true
		}
		canFail = canFail || strings.HasPrefix(term, "-")
	}
	return exp, redirect, hasAll, canFail
}

// validatedName is %{p} (RFC 7208 §7.3, the "validated domain name" of
// §5.5): a PTR name of ip that resolves back to it, preferring domain,
// then a subdomain of it; "unknown" when there is none.
func validatedName(ctx context.Context, dns *memoResolver, ip netip.Addr, domain string) string {
	names, err := dns.LookupAddr(ctx, ip.String())
	if err != nil {
		return "unknown"
	}
	var best string
	rank := 0
	for _, n := range names[:min(len(names), 10)] { // §4.6.4: at most 10 PTR names
		n = strings.TrimSuffix(n, ".")
		if !resolvesTo(ctx, dns, n, ip) {
			continue
		}
		r := 1
		if strings.EqualFold(n, domain) {
			r = 3
		} else if strings.HasSuffix(strings.ToLower(n), "."+strings.ToLower(domain)) {
			r = 2
		}
		if r > rank {
			best, rank = n, r
		}
	}
	if best == "" {
		return "unknown"
	}
	return best
}

func resolvesTo(ctx context.Context, dns *memoResolver, name string, ip netip.Addr) bool {
	addrs, err := dns.LookupIPAddr(ctx, name)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			return true
		}
	}
	return false
}

// oneLine makes text safe for an SMTP reply: printable ASCII on one line
// (anything else becomes "?"), trimmed, at most maxExplanation octets.
func oneLine(text string) string {
	b := []byte(strings.TrimSpace(text))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > maxExplanation {
		b = b[:maxExplanation]
	}
	return strings.TrimSpace(string(b))
}

// envFor is the macro environment of an evaluation.
func envFor(v vars, ip netip.Addr, receiver string) macroEnv {
	now := v.now
	if now.IsZero() {
		now = time.Now()
	}
	return macroEnv{sender: v.sender, domain: v.domain, ip: ip, helo: v.helo, receiver: receiver, now: now}
}
