package main

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
)

func TestLoad(t *testing.T) {
	srv := dnstest.New(t)
	zone := `$ORIGIN test.
$TTL 300
@ IN SOA ns host 1 3600 600 86400 60
2.0.0.127.zen IN A 127.0.0.2
!servfail 3.0.0.127.zen.test.
`
	if err := load(srv, strings.NewReader(zone), "z"); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Timeout: time.Second}
	for name, rcode := range map[string]int{
		"2.0.0.127.zen.test.": dns.RcodeSuccess,
		"3.0.0.127.zen.test.": dns.RcodeServerFailure,
		"4.0.0.127.zen.test.": dns.RcodeNameError,
	} {
		q := new(dns.Msg).SetQuestion(name, dns.TypeA)
		m, _, err := c.Exchange(q, srv.Addr())
		if err != nil || m.Rcode != rcode {
			t.Errorf("%s: %v %v, want rcode %d", name, m, err, rcode)
		}
	}
	if err := load(srv, strings.NewReader("!explode x\n"), "z"); err == nil {
		t.Error("an unknown behaviour line must be an error")
	}
}
