package dnstest

import (
	"strings"
	"time"

	"github.com/miekg/dns"
)

// handle answers one query the way an authoritative server does: records
// of the asked type (following CNAMEs inside the data), NODATA when the
// name exists with other types, NXDOMAIN otherwise; negative answers carry
// the enclosing zone's SOA so clients can cache them (RFC 2308 §3).
func (s *Server) handle(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canon(q.Name)
	delay, gate, rcode, trunc := s.behaviour(name, q.Qtype)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-s.closed:
			return
		}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-s.closed:
			return
		}
	}
	switch {
	case rcode != dns.RcodeSuccess:
		m.Rcode = rcode
	case trunc && w.LocalAddr().Network() == "udp":
		m.Truncated = true
	default:
		s.answer(m, name, q.Qtype)
	}
	w.WriteMsg(m)
}

// behaviour counts the query and returns what was configured for name.
func (s *Server) behaviour(name string, qtype uint16) (time.Duration, <-chan struct{}, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries[qkey{name, qtype}]++
	return s.delays[name], s.gates[name], s.rcodes[name], s.trunc[name]
}

func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 8 { // CNAME chain limit
		rrs, exists := s.lookup(name)
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype || qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found {
			return
		}
		if cname == nil {
			s.negative(m, name, exists)
			return
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = canon(cname.Target)
	}
}

// lookup returns the records of name, or of a matching wildcard
// ("*.dbl.test." answers for any name under dbl.test., as Spamhaus DBL is
// wildcarded) with the owner rewritten to name.
func (s *Server) lookup(name string) ([]dns.RR, bool) {
	if rrs, ok := s.rrs[name]; ok {
		return rrs, true
	}
	labels := dns.SplitDomainName(name)
	for i := 1; i < len(labels); i++ {
		wild := "*." + dns.Fqdn(joinLabels(labels[i:]))
		if rrs, ok := s.rrs[wild]; ok {
			out := make([]dns.RR, len(rrs))
			for j, rr := range rrs {
				out[j] = dns.Copy(rr)
				out[j].Header().Name = name
			}
			return out, true
		}
	}
	return nil, false
}

// negative fills a NODATA or NXDOMAIN answer with the closest enclosing
// SOA, its TTL being min(SOA TTL, MINIMUM) as RFC 2308 §3 asks.
func (s *Server) negative(m *dns.Msg, name string, exists bool) {
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	labels := dns.SplitDomainName(name)
	for i := range labels {
		for _, rr := range s.rrs[dns.Fqdn(joinLabels(labels[i:]))] {
			if soa, ok := rr.(*dns.SOA); ok {
				c := dns.Copy(soa).(*dns.SOA)
				c.Hdr.Ttl = min(c.Hdr.Ttl, c.Minttl)
				m.Ns = append(m.Ns, c)
				return
			}
		}
	}
}

func joinLabels(l []string) string { return strings.Join(l, ".") }
