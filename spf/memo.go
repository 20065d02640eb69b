package spf

import (
	"context"
	"net"
	"strings"
	"sync"

	gospf "blitiri.com.ar/go/spf"

	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
)

// memoResolver serves one message's evaluation pair, the client's and the
// probe's (passesAnyone): each name is asked once and the probe, which
// walks the same record, normally sends no query at all. It also notes
// the first lookup that got no response from our own resolver, which is
// what tells "our DNS is down" from "the sender's DNS failed" (see
// resolver.IsTransport). Safe for concurrent use, though go/spf asks one
// name at a time.
type memoResolver struct {
	r gospf.DNSResolver

	mu        sync.Mutex
	answers   map[query]answer
	transport error // first lookup our resolver did not answer
}

type query struct{ kind, name string }

type answer struct {
	v   any
	err error
}

func newMemo(r gospf.DNSResolver) *memoResolver {
	return &memoResolver{r: r, answers: map[query]answer{}}
}

// size is about how many bytes the answers hold: names and values.
func (m *memoResolver) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for q, a := range m.answers {
		n += len(q.name) + 16
		switch v := a.v.(type) {
		case []string: // TXT, PTR
			for _, s := range v {
				n += len(s) + 16
			}
		case []*net.MX:
			for _, mx := range v {
				n += len(mx.Host) + 24
			}
		case []net.IPAddr:
			n += len(v) * 40
		}
	}
	return n
}

// failure returns the first lookup that got no response from our resolver.
func (m *memoResolver) failure() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.transport
}

func memo[T any](m *memoResolver, kind, name string, ask func() (T, error)) (T, error) {
	q := query{kind, strings.ToLower(strings.TrimSuffix(name, "."))}
	m.mu.Lock()
	a, ok := m.answers[q]
	m.mu.Unlock()
	if ok {
		v, _ := a.v.(T)
		return v, a.err
	}
	v, err := ask()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.answers[q] = answer{v, err}
	if err != nil && m.transport == nil && resolver.IsTransport(err) {
		m.transport = err
	}
	return v, err
}

func (m *memoResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return memo(m, "TXT", name, func() ([]string, error) { return m.r.LookupTXT(ctx, name) })
}

func (m *memoResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return memo(m, "MX", name, func() ([]*net.MX, error) { return m.r.LookupMX(ctx, name) })
}

func (m *memoResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return memo(m, "IP", host, func() ([]net.IPAddr, error) { return m.r.LookupIPAddr(ctx, host) })
}

func (m *memoResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return memo(m, "PTR", addr, func() ([]string, error) { return m.r.LookupAddr(ctx, addr) })
}

// asked reports whether kind (TXT, MX, IP, PTR) of name was looked up.
func (m *memoResolver) asked(kind, name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.answers[query{kind, strings.ToLower(strings.TrimSuffix(name, "."))}]
	return ok
}

// cachedRecord returns the SPF record the evaluation fetched for domain,
// "" if it fetched none or not exactly one (RFC 7208 §4.5).
func (m *memoResolver) cachedRecord(domain string) string {
	m.mu.Lock()
	a, ok := m.answers[query{"TXT", strings.ToLower(strings.TrimSuffix(domain, "."))}]
	m.mu.Unlock()
	if !ok || a.err != nil {
		return ""
	}
	recs := spfRecords(a.v.([]string))
	if len(recs) != 1 {
		return ""
	}
	return recs[0]
}

// records returns every SPF record the evaluation fetched, one per name
// that had exactly one: the records go/spf read.
func (m *memoResolver) records() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for q, a := range m.answers {
		if q.kind != "TXT" || a.err != nil {
			continue
		}
		if recs := spfRecords(a.v.([]string)); len(recs) == 1 {
			out = append(out, recs[0])
		}
	}
	return out
}

// complete reports whether every lookup got an answer: data, or a name
// or type that does not exist. A SERVFAIL, a timeout or a deadline may
// have changed the result (a failed lookup is "not matched" in places,
// such as passesAnyone's probe and the exp= of §6.2), so an evaluation
// that met one is not reused.
func (m *memoResolver) complete() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.answers {
		if a.err != nil && resolver.IsTemporary(a.err) {
			return false
		}
	}
	return true
}

// usesSender reports whether a record the evaluation read expands the
// sender (%{s}) or its local part (%{l}), RFC 7208 §7.3: then the result
// may differ for another sender of the same domain. A record that does
// not parse counts as one that does.
func (m *memoResolver) usesSender() bool {
	for _, rec := range m.records() {
		toks, err := parseMacros(rec, true)
		if err != nil {
			return true
		}
		for _, t := range toks {
			if t.letter == 's' || t.letter == 'l' {
				return true
			}
		}
	}
	return false
}

// spfRecords selects the SPF records among TXT strings as go/spf does:
// "v=spf1" alone or followed by a space, in any case (RFC 7208 §4.5).
func spfRecords(txts []string) []string {
	var recs []string
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	return recs
}
