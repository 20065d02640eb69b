package dnstest_test

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
)

func query(t *testing.T, s *dnstest.Server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: time.Second}
	m, _, err := c.Exchange(q, s.Addr())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func TestAnswers(t *testing.T) {
	s := dnstest.New(t,
		"zone.test. 3600 IN SOA ns.zone.test. h.zone.test. 1 3600 600 86400 30",
		"host.zone.test. 300 IN A 127.0.0.2",
		"*.wild.zone.test. 60 IN A 127.0.1.2",
	)
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soaTTL  uint32 // 0: no SOA expected
	}{
		{"host.zone.test", dns.TypeA, dns.RcodeSuccess, 1, 0},
		{"HOST.zone.test", dns.TypeA, dns.RcodeSuccess, 1, 0},
		{"host.zone.test", dns.TypeTXT, dns.RcodeSuccess, 0, 30},
		{"nx.zone.test", dns.TypeA, dns.RcodeNameError, 0, 30},
		{"a.b.wild.zone.test", dns.TypeA, dns.RcodeSuccess, 1, 0},
		{"other.test", dns.TypeA, dns.RcodeNameError, 0, 0},
	}
	for _, tt := range tests {
		m := query(t, s, tt.name, tt.qtype)
		if !m.Authoritative {
			t.Errorf("%s: AA bit not set", tt.name)
		}
		if m.Rcode != tt.rcode || len(m.Answer) != tt.answers {
			t.Errorf("%s: rcode %d answers %d, want %d %d", tt.name, m.Rcode, len(m.Answer), tt.rcode, tt.answers)
		}
		if tt.soaTTL != 0 && (len(m.Ns) != 1 || m.Ns[0].Header().Ttl != tt.soaTTL) {
			t.Errorf("%s: authority %v, want SOA with TTL %d", tt.name, m.Ns, tt.soaTTL)
		}
	}
	if got := s.Queries("host.zone.test", dns.TypeA); got != 2 {
		t.Errorf("query count %d, want 2", got)
	}
}

func TestBehaviours(t *testing.T) {
	s := dnstest.New(t, "x.test. 300 IN A 127.0.0.2")
	s.SetRcode("x.test", dns.RcodeServerFailure)
	if m := query(t, s, "x.test", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %d, want SERVFAIL", m.Rcode)
	}
	s.SetRcode("x.test", dns.RcodeSuccess)
	if m := query(t, s, "x.test", dns.TypeA); len(m.Answer) != 1 {
		t.Errorf("after reset: %v", m)
	}
	s.Remove("x.test")
	if m := query(t, s, "x.test", dns.TypeA); m.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove: rcode %d, want NXDOMAIN", m.Rcode)
	}
	if err := s.Add("bad line"); err == nil {
		t.Error("a malformed record must be an error")
	}
}
