// Package resolver is mxpolicyd's one DNS client. DNS lists use Exchange
// for raw answers (TTLs, SOA for negative caching); SPF uses the
// *net.Resolver-shaped methods in lookup.go. Both ask the same server with
// the same error classification: a timeout, SERVFAIL or REFUSED is
// temporary, NXDOMAIN is an answer and not an error.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the EDNS0 buffer we advertise: the DNS Flag Day 2020 value,
// small enough to avoid IP fragmentation; bigger answers come over TCP.
const ednsSize = 1232

// Resolver sends queries to one recursive server. Safe for concurrent use.
type Resolver struct {
	server  string
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
	health  health
}

// New returns a resolver for cfg, reading /etc/resolv.conf when
// cfg.Server is empty.
func New(cfg Config) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	server := cfg.Server
	if server == "" {
		var err error
		if server, err = ServerFromResolvConf(DefaultResolvConf); err != nil {
			return nil, err
		}
	}
	return &Resolver{
		server:  server,
		timeout: cfg.Timeout,
		udp:     &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: cfg.Timeout},
		tcp:     &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		health:  health{obs: nopObserver{}},
	}, nil
}

// Server is the host:port queries go to.
func (r *Resolver) Server() string { return r.server }

// Exchange asks for name/qtype and returns the answer. NOERROR (with or
// without records) and NXDOMAIN return the message and a nil error, so
// callers can read TTLs and the SOA for negative caching (RFC 2308 §5).
// Everything else returns an *Error; see its Temporary field.
//
// A name that cannot be encoded in a query (an empty label, a label over
// 63 octets, a name over 255: RFC 1035 §2.3.4) is not asked: it answers
// NXDOMAIN at once, since no such name can exist. SPF builds names from
// the sender's data and macros, and RFC 7208 §4.3 makes such a name
// "none", not a temporary error that would defer the mail on every retry.
func (r *Resolver) Exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if !encodable(name) {
		return notFound(name, qtype), nil
	}
	resp, err := r.exchange(ctx, name, qtype)
	r.recordHealth(ctx, err)
	return resp, err
}

func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(ednsSize, false)
	resp, _, err := r.udp.ExchangeContext(ctx, q, r.server)
	if resp != nil && resp.Truncated {
		// RFC 7766 §5: a truncated UDP answer is retried over TCP. Also
		// one that does not unpack: a server may cut the answer at 512
		// octets, set TC and leave the counts (RFC 1035 §4.2.1), and
		// miekg/dns then returns the header it read with the error.
		resp, _, err = r.tcp.ExchangeContext(ctx, q, r.server)
	}
	if err != nil {
		return nil, r.transportError(ctx, name, qtype, err)
	}
	return resp, r.rcodeError(name, qtype, resp.Rcode)
}

// encodable reports whether name fits in a query's question section:
// labels of 1 to 63 octets, 255 in all (RFC 1035 §2.3.4), as miekg/dns's
// own packing checks them, without packing.
func encodable(name string) bool {
	_, ok := dns.IsDomainName(name)
	return ok
}

// notFound is the NXDOMAIN answer for a name that was never asked.
func notFound(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	m.Response, m.Rcode = true, dns.RcodeNameError
	return m
}

// transportError classifies a failure to get any answer. miekg/dns reports
// a context deadline as a plain i/o timeout (errors.Is(err,
// context.DeadlineExceeded) is false), so both are checked.
func (r *Resolver) transportError(ctx context.Context, name string, qtype uint16, err error) error {
	e := &Error{Name: name, Qtype: qtype, Server: r.server, Rcode: -1, Err: err, Temporary: true}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
		e.Timeout = true
	}
	return e
}

// rcodeError maps a response code to an error. SERVFAIL and REFUSED are
// temporary: the resolver could not reach the authority, or a DNSBL refused
// a disabled DQS key for now; FORMERR, NOTIMP and the rest will not change
// on retry.
func (r *Resolver) rcodeError(name string, qtype uint16, rcode int) error {
	switch rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return nil
	case dns.RcodeServerFailure, dns.RcodeRefused:
		return &Error{Name: name, Qtype: qtype, Server: r.server, Rcode: rcode, Temporary: true}
	}
	return &Error{Name: name, Qtype: qtype, Server: r.server, Rcode: rcode}
}

// Error is a query that got no usable answer. IsTransport tells a query
// that got no response (our resolver's failure) from an error response.
type Error struct {
	Name      string
	Qtype     uint16
	Server    string
	Rcode     int   // -1 when no response arrived
	Err       error // the transport error, if any
	Timeout   bool
	Temporary bool
}

func (e *Error) Error() string {
	what := "no answer"
	switch {
	case e.Timeout:
		what = "timeout"
	case e.Rcode >= 0:
		what = dns.RcodeToString[e.Rcode]
	case e.Err != nil:
		what = e.Err.Error()
	}
	return fmt.Sprintf("resolver: %s %s via %s: %s", dns.TypeToString[e.Qtype], e.Name, e.Server, what)
}

func (e *Error) Unwrap() error { return e.Err }

// IsTemporary reports whether err is worth retrying later: a timeout,
// SERVFAIL, REFUSED, a network error, or a context deadline.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTemporary || de.IsTimeout
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
