package resolver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
)

// bigTXT is the full answer for big.test.: 20 TXT records, about 2 KB,
// more than fits in a 512-octet UDP message.
func bigTXT(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for i := range 20 {
		m.Answer = append(m.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
			Txt: []string{fmt.Sprintf("record %02d %080d", i, 0)},
		})
	}
	return m
}

// A server that cuts its UDP answer
// at 512 octets and sets TC (RFC 1035 §4.2.1: "longer messages are
// truncated and the TC bit is set"), leaving the header's counts as they
// were, must still make the resolver ask again over TCP (RFC 7766 §5),
// as net.Resolver does (it reads only header and question before
// honouring TC). The TCP side answers in full.
func TestCutTruncatedUDPRetriesOverTCP(t *testing.T) {
	pc, ln := dnstest.ListenPort(t)
	// UDP: answer with the first 512 octets of the full answer, TC set.
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := new(dns.Msg)
			if req.Unpack(buf[:n]) != nil {
				continue
			}
			m := bigTXT(req)
			m.Truncated = true
			wire, err := m.Pack()
			if err != nil {
				continue
			}
			pc.WriteTo(wire[:512], from)
		}
	}()
	// TCP: the full answer.
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { w.WriteMsg(bigTXT(req)) })}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { pc.Close(); srv.Shutdown() })

	r, err := resolver.New(resolver.Config{Server: pc.LocalAddr().String(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Exchange(context.Background(), "big.test", dns.TypeTXT)
	if err != nil {
		t.Fatalf("truncated UDP answer not retried over TCP: %v (IsTransport=%v)", err, resolver.IsTransport(err))
	}
	if len(m.Answer) != 20 {
		t.Fatalf("got %d records, want the 20 of the TCP answer", len(m.Answer))
	}
}
