package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// The methods below make *Resolver a blitiri.com.ar/go/spf DNSResolver
// ("intentionally compatible with *net.Resolver"). That library classifies
// errors with a type assertion to *net.DNSError: Temporary() gives
// TempError, IsNotFound gives None or a non-match, and anything else,
// including a bare context error, gives PermError. So every error returned
// here is a *net.DNSError, never wrapped, and a deadline is temporary.

// LookupTXT returns the TXT records of name, each record's strings joined
// as net.Resolver does (RFC 7208 §3.3).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	txts := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		txts = append(txts, UnescapeTXT(strings.Join(rr.(*dns.TXT).Txt, "")))
	}
	return txts, nil
}

// UnescapeTXT turns miekg/dns's presentation form of a TXT string back
// into its octets, as net.Resolver returns them: it escapes a quote and a backslash
// with a backslash and any octet outside printable ASCII as \DDD. SPF
// must see the octets: a record with 8-bit or control characters is not
// the text its escapes spell (RFC 7208 §12, ABNF of macro-literal).
func UnescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+3 < len(s) && isDigits(s[i+1:i+4]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			b, i = append(b, byte(n)), i+3
			continue
		}
		if c == '\\' && i+1 < len(s) {
			i++
			c = s[i]
		}
		b = append(b, c)
	}
	return string(b)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) == 3
}

// LookupMX returns the MX records of name sorted by preference.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	mxs := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	return mxs, nil
}

// LookupAddr returns the PTR names of an address.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := r.lookup(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		names = append(names, rr.(*dns.PTR).Ptr)
	}
	return names, nil
}

// LookupIPAddr returns the A and AAAA addresses of host, asked in parallel.
// Like net.Resolver, an answer for one family is enough; an error is
// returned only when neither family produced an address.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: net.IP(ip.AsSlice()), Zone: ip.Zone()}}, nil
	}
	type res struct {
		rrs []dns.RR
		err error
	}
	ch := make(chan res, 2)
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		go func() {
			// A panic in the DNS library must not take the daemon down:
			// it becomes this query's error (a temporary one, as go/spf
			// should answer temperror for it, not a wrong verdict).
			defer func() {
				if p := recover(); p != nil {
					ch <- res{err: &net.DNSError{Err: fmt.Sprintf("resolver: panic: %v", p), Name: host,
						Server: r.server, IsTemporary: true}}
				}
			}()
			rrs, err := r.lookup(ctx, host, qt)
			ch <- res{rrs, err}
		}()
	}
	var addrs []net.IPAddr
	var errs [2]error
	for i := range errs {
		x := <-ch
		errs[i] = x.err
		addrs = appendIPs(addrs, x.rrs)
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	return nil, worstError(errs[0], errs[1])
}

func appendIPs(addrs []net.IPAddr, rrs []dns.RR) []net.IPAddr {
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			addrs = append(addrs, net.IPAddr{IP: v.A})
		case *dns.AAAA:
			addrs = append(addrs, net.IPAddr{IP: v.AAAA})
		}
	}
	return addrs
}

// worstError prefers a temporary error over "not found": if the AAAA query
// timed out, "no such host" would be a lie that SPF turns into a non-match.
func worstError(a, b error) error {
	var da, db *net.DNSError
	errors.As(a, &da)
	errors.As(b, &db)
	if da != nil && da.IsNotFound && b != nil {
		return b
	}
	if a != nil {
		return a
	}
	return b
}

// lookup asks for qtype records of name. NXDOMAIN and NODATA both return
// IsNotFound, as net.Resolver does.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	resp, err := r.Exchange(ctx, name, qtype)
	if err != nil {
		return nil, r.dnsError(name, err)
	}
	var rrs []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name, Server: r.server, IsNotFound: true}
	}
	return rrs, nil
}

// dnsError converts an Exchange error to the *net.DNSError go/spf reads.
// UnwrapErr keeps the *Error reachable with errors.As, so a caller can
// still tell our resolver's silence from the domain's failure
// (IsTransport). Every error response is temporary here: RFC 7208 §4.4
// makes any RCODE but 0 and 3 a temperror, where go/spf would make a
// DNS error that is neither temporary nor "not found" a permerror
// (NXDOMAIN never gets here: rcodeError lets it through).
func (r *Resolver) dnsError(name string, err error) *net.DNSError {
	de := &net.DNSError{Err: err.Error(), Name: name, Server: r.server, UnwrapErr: err}
	var e *Error
	if errors.As(err, &e) {
		de.IsTimeout, de.IsTemporary = e.Timeout, e.Temporary || e.Rcode >= 0
	}
	return de
}
