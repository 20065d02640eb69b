package whitelist

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// index is an immutable snapshot of every entry, built once per change and
// read without locks. Lookups are map probes: one per prefix length in use
// for addresses, one per label for domains; only regexes are scanned.
type index struct {
	bits4, bits6 []int // prefix lengths in use, longest first
	prefixes     map[netip.Prefix][]*Entry
	hosts        domainSet
	hostRes      []*Entry
	senders      mailSet
	recipients   mailSet
	roles        mailSet // role recipients, which bypass more (roleBypasses)
	size         int
}

// entries maps a key to its entries: several sources may list one value,
// and an expired one must not hide a live one.
type entries map[string][]*Entry

// domainSet holds host-name patterns by form.
type domainSet struct {
	exact entries // "=host"
	whole entries // "domain": it and its subdomains
	sub   entries // ".domain": subdomains only
}

// mailSet holds sender or recipient patterns by form.
type mailSet struct {
	addrs   entries // user@domain
	locals  entries // user@
	domains domainSet
	res     []*Entry
}

func newIndex(lists ...[]Entry) *index {
	ix := &index{prefixes: map[netip.Prefix][]*Entry{}}
	for _, list := range lists {
		for i := range list {
			ix.add(&list[i])
		}
	}
	desc := func(a, b int) int { return b - a }
	slices.SortFunc(ix.bits4, desc)
	slices.SortFunc(ix.bits6, desc)
	return ix
}

func (ix *index) add(e *Entry) {
	ix.size++
	switch e.Kind {
	case Client:
		ix.addPrefix(e)
	case ClientName:
		if e.pat.form == formRegex {
			ix.hostRes = append(ix.hostRes, e)
			return
		}
		ix.hosts.add(e)
	case Sender:
		ix.senders.add(e)
	case Recipient:
		if e.bypass != nil {
			ix.roles.add(e)
			return
		}
		ix.recipients.add(e)
	}
}

func (ix *index) addPrefix(e *Entry) {
	p := e.pat.prefix
	bits := &ix.bits6
	if p.Addr().Is4() {
		bits = &ix.bits4
	}
	if !slices.Contains(*bits, p.Bits()) {
		*bits = append(*bits, p.Bits())
	}
	ix.prefixes[p] = append(ix.prefixes[p], e)
}

func (m *entries) put(key string, e *Entry) {
	if *m == nil {
		*m = entries{}
	}
	(*m)[key] = append((*m)[key], e)
}

func (d *domainSet) add(e *Entry) {
	name := strings.TrimLeft(e.pat.key, "=.")
	switch e.pat.form {
	case formExact:
		d.exact.put(name, e)
	case formSub:
		d.sub.put(name, e)
	default:
		d.whole.put(name, e)
	}
}

func (s *mailSet) add(e *Entry) {
	switch e.pat.form {
	case formAddress:
		s.addrs.put(e.pat.key, e)
	case formLocal:
		s.locals.put(strings.TrimSuffix(e.pat.key, "@"), e)
	case formRegex:
		s.res = append(s.res, e)
	default:
		s.domains.add(e)
	}
}

// first returns the first entry under key that is live at now.
func (m entries) first(key string, now time.Time) *Entry {
	for _, e := range m[key] {
		if e.live(now) {
			return e
		}
	}
	return nil
}

func firstRegex(res []*Entry, s string, now time.Time) *Entry {
	for _, e := range res {
		if e.live(now) && e.pat.re.MatchString(s) {
			return e
		}
	}
	return nil
}

// match finds what req matches at now. A client match exempts from every
// check, so the envelope is looked at only when the client is not listed.
func (ix *index) match(req *policy.Request, now time.Time) Match {
	var m Match
	if e := ix.matchClient(req.ClientAddress, now); e != nil {
		m.add(e)
		return m
	}
	if e := ix.matchHost(req, now); e != nil {
		m.add(e)
		return m
	}
	if req.Sender != "" { // the null sender is nobody; it cannot be listed
		m.add(ix.senders.match(req.Sender, now))
	}
	if e := ix.roles.match(req.Recipient, now); e != nil {
		m.add(e)
		return m
	}
	m.add(ix.recipients.match(req.Recipient, now))
	return m
}

// matchClient tries the longest prefix first, so the most specific entry
// is the one reported.
func (ix *index) matchClient(a netip.Addr, now time.Time) *Entry {
	if !a.IsValid() {
		return nil
	}
	a = a.Unmap()
	bits := ix.bits6
	if a.Is4() {
		bits = ix.bits4
	}
	for _, b := range bits {
		p, _ := a.Prefix(b)
		for _, e := range ix.prefixes[p] {
			if e.live(now) {
				return e
			}
		}
	}
	return nil
}

// matchHost matches only the name Postfix verified (client_name), never
// reverse_client_name: a PTR record alone is whatever its owner wants.
func (ix *index) matchHost(req *policy.Request, now time.Time) *Entry {
	if !req.ClientVerified() || ix.hosts.empty() && len(ix.hostRes) == 0 {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(req.ClientName, "."))
	if e := ix.hosts.match(name, now); e != nil {
		return e
	}
	return firstRegex(ix.hostRes, name, now)
}

// empty reports a set without patterns, which matches nothing: most
// sites list few kinds, and every request asks each set.
func (d *domainSet) empty() bool { return len(d.exact) == 0 && len(d.whole) == 0 && len(d.sub) == 0 }

func (s *mailSet) empty() bool {
	return len(s.addrs) == 0 && len(s.locals) == 0 && s.domains.empty() && len(s.res) == 0
}

// match walks name and its parent domains: one map probe per label.
func (d *domainSet) match(name string, now time.Time) *Entry {
	if name == "" || d.empty() {
		return nil
	}
	if e := d.exact.first(name, now); e != nil {
		return e
	}
	if e := d.whole.first(name, now); e != nil {
		return e
	}
	for i := strings.IndexByte(name, '.'); i >= 0; i = strings.IndexByte(name, '.') {
		name = name[i+1:]
		if e := d.whole.first(name, now); e != nil {
			return e
		}
		if e := d.sub.first(name, now); e != nil {
			return e
		}
	}
	return nil
}

// match looks addr up the way postgrey's whitelist_recipients does:
// user@domain and user@ also match user+extension.
func (s *mailSet) match(addr string, now time.Time) *Entry {
	if s.empty() {
		return nil
	}
	addr = strings.TrimSuffix(strings.ToLower(addr), ".")
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i+1:]
	}
	base, _, _ := strings.Cut(local, "+")
	if e := s.matchLocal(addr, local, base, domain, now); e != nil {
		return e
	}
	if e := s.domains.match(domain, now); e != nil {
		return e
	}
	return firstRegex(s.res, addr, now)
}

func (s *mailSet) matchLocal(addr, local, base, domain string, now time.Time) *Entry {
	if len(s.addrs) > 0 && domain != "" {
		if e := s.addrs.first(addr, now); e != nil {
			return e
		}
		if base != local {
			if e := s.addrs.first(base+"@"+domain, now); e != nil {
				return e
			}
		}
	}
	if e := s.locals.first(local, now); e != nil || base == local {
		return e
	}
	return s.locals.first(base, now)
}
