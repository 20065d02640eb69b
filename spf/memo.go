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

// failure returns the first lookup that got no response from our resolver.
func (m *memoResolver) failure() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.transport
}

func memo[T any](m *memoResolver, kind, name string, ask func() (T, error)) (T, error) {
	q := query{kind, strings.ToLower(name)}
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
