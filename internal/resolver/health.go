package resolver

import (
	"context"
	"errors"
	"net"
	"sync"
)

// UnhealthyAfter is how many queries in a row must get no response at all
// from the server before the resolver counts as unhealthy. One lost UDP
// datagram is noise; three in a row, with a local resolver a few
// microseconds away, is a resolver that is down or overloaded. Any
// response, SERVFAIL included, makes it healthy again.
const UnhealthyAfter = 3

// Observer receives the resolver's health for metrics; *metrics.Metrics
// implements it. Calls must not block: they happen on the request path.
type Observer interface {
	// ResolverFailure counts one query that got no response: a timeout, a
	// refused connection, a network error.
	ResolverFailure()
	// ResolverHealthy reports the health when it changes, and once when
	// the observer is set.
	ResolverHealthy(ok bool)
}

type nopObserver struct{}

func (nopObserver) ResolverFailure()     {}
func (nopObserver) ResolverHealthy(bool) {}

// health is the failure count behind Healthy, a breaker without the
// pause: like a DNS list's (dnsbl/health.go), but every query still goes
// out, since there is no other server to ask and the first answer should
// count at once.
type health struct {
	mu    sync.Mutex
	fails int
	obs   Observer
}

func (h *health) record(ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	was := h.fails < UnhealthyAfter
	if ok {
		h.fails = 0
	} else {
		h.fails++
		h.obs.ResolverFailure()
	}
	if now := h.fails < UnhealthyAfter; now != was {
		h.obs.ResolverHealthy(now)
	}
}

func (h *health) healthy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fails < UnhealthyAfter
}

func (h *health) setObserver(o Observer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.obs = o
	o.ResolverHealthy(h.fails < UnhealthyAfter)
}

// Healthy reports whether the server has been answering: false after
// UnhealthyAfter queries in a row got no response from it.
func (r *Resolver) Healthy() bool { return r.health.healthy() }

// SetObserver sends health changes and failures to o; call it before the
// resolver is shared.
func (r *Resolver) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	r.health.setObserver(o)
}

// recordHealth counts one Exchange. A query the caller cancelled says
// nothing about the server; one that ran out of time does: the server
// did not answer within what we could wait.
func (r *Resolver) recordHealth(ctx context.Context, err error) {
	switch {
	case err == nil || !IsTransport(err):
		r.health.record(true)
	case errors.Is(ctx.Err(), context.Canceled):
	default:
		r.health.record(false)
	}
}

// IsTransport reports whether err is a query that got no response from
// our server at all (timeout, refused connection, network error): our
// resolver's failure, not the queried domain's. A SERVFAIL or REFUSED is
// a response: the resolver is up and the domain's own servers failed it.
// A *net.DNSError from another resolver (net.Resolver) counts when it is
// a timeout, the one failure it reports without a response.
func IsTransport(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Rcode < 0
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTimeout
	}
	return errors.Is(err, context.DeadlineExceeded)
}
