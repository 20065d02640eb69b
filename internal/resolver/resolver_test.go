package resolver_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
)

func newResolver(t *testing.T, srv *dnstest.Server, timeout time.Duration) *resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: srv.Addr(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var zone = []string{
	"test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120",
	"a.test. 300 IN A 192.0.2.1",
	"a.test. 300 IN AAAA 2001:db8::1",
	"v4.test. 300 IN A 192.0.2.4",
	"txt.test. 300 IN TXT \"v=spf1 \" \"-all\"",
	"mx.test. 300 IN MX 20 b.test.",
	"mx.test. 300 IN MX 10 a.test.",
	"1.2.0.192.in-addr.arpa. 300 IN PTR a.test.",
	"alias.test. 300 IN CNAME a.test.",
}

func TestExchange(t *testing.T) {
	srv := dnstest.New(t, zone...)
	r := newResolver(t, srv, time.Second)
	ctx := context.Background()

	m, err := r.Exchange(ctx, "a.test", dns.TypeA)
	if err != nil || len(m.Answer) != 1 || !m.Authoritative {
		t.Fatalf("A a.test: %v %v", m, err)
	}
	m, err = r.Exchange(ctx, "nx.test", dns.TypeA)
	if err != nil || m.Rcode != dns.RcodeNameError {
		t.Fatalf("NXDOMAIN must be an answer, not an error: %v %v", m, err)
	}
	if len(m.Ns) != 1 || m.Ns[0].Header().Ttl != 120 {
		t.Fatalf("NXDOMAIN must carry the SOA with the negative TTL: %v", m.Ns)
	}
	m, err = r.Exchange(ctx, "alias.test", dns.TypeA)
	if err != nil || len(m.Answer) != 2 {
		t.Fatalf("CNAME chain: %v %v", m, err)
	}
}

func TestExchangeErrors(t *testing.T) {
	srv := dnstest.New(t, zone...)
	srv.SetRcode("fail.test", dns.RcodeServerFailure)
	srv.SetRcode("refused.test", dns.RcodeRefused)
	srv.SetRcode("notimp.test", dns.RcodeNotImplemented)
	srv.SetDelay("slow.test", 2*time.Second)
	r := newResolver(t, srv, 150*time.Millisecond)
	tests := []struct {
		name            string
		temporary, tout bool
	}{
		{"fail.test", true, false},
		{"refused.test", true, false},
		{"notimp.test", false, false},
		{"slow.test", true, true},
	}
	for _, tt := range tests {
		start := time.Now()
		_, err := r.Exchange(context.Background(), tt.name, dns.TypeA)
		var e *resolver.Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: want *resolver.Error, got %v", tt.name, err)
		}
		if resolver.IsTemporary(err) != tt.temporary || e.Timeout != tt.tout {
			t.Errorf("%s: temporary=%v timeout=%v, want %v %v (%v)", tt.name,
				resolver.IsTemporary(err), e.Timeout, tt.temporary, tt.tout, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v, the timeout is 150ms", tt.name, d)
		}
	}
}

func TestExchangeContextDeadline(t *testing.T) {
	srv := dnstest.New(t, zone...)
	srv.SetDelay("slow.test", 2*time.Second)
	r := newResolver(t, srv, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Exchange(ctx, "slow.test", dns.TypeA)
	var e *resolver.Error
	if !errors.As(err, &e) || !e.Timeout || time.Since(start) > time.Second {
		t.Fatalf("a caller's deadline must bound the query: %v after %v", err, time.Since(start))
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	srv := dnstest.New(t, zone...)
	srv.SetTruncate("a.test", true)
	r := newResolver(t, srv, time.Second)
	m, err := r.Exchange(context.Background(), "a.test", dns.TypeA)
	if err != nil || m.Truncated || len(m.Answer) != 1 {
		t.Fatalf("want the full answer over TCP: %v %v", m, err)
	}
	if srv.Queries("a.test", dns.TypeA) != 2 {
		t.Fatalf("want one UDP and one TCP query, got %d", srv.Queries("a.test", dns.TypeA))
	}
}

func TestLookups(t *testing.T) {
	srv := dnstest.New(t, zone...)
	r := newResolver(t, srv, time.Second)
	ctx := context.Background()

	txt, err := r.LookupTXT(ctx, "txt.test")
	if err != nil || !slices.Equal(txt, []string{"v=spf1 -all"}) {
		t.Errorf("TXT: %q %v", txt, err)
	}
	mx, err := r.LookupMX(ctx, "mx.test")
	if err != nil || len(mx) != 2 || mx[0].Host != "a.test." || mx[0].Pref != 10 {
		t.Errorf("MX: %v %v", mx, err)
	}
	ips, err := r.LookupIPAddr(ctx, "a.test")
	if err != nil || len(ips) != 2 {
		t.Errorf("IPAddr: %v %v", ips, err)
	}
	ips, err = r.LookupIPAddr(ctx, "v4.test") // AAAA is NODATA
	if err != nil || len(ips) != 1 || !ips[0].IP.Equal(net.ParseIP("192.0.2.4")) {
		t.Errorf("IPAddr v4 only: %v %v", ips, err)
	}
	names, err := r.LookupAddr(ctx, "192.0.2.1")
	if err != nil || !slices.Equal(names, []string{"a.test."}) {
		t.Errorf("PTR: %v %v", names, err)
	}
}

func TestLookupErrorsAreNetDNSErrors(t *testing.T) {
	srv := dnstest.New(t, zone...)
	srv.SetRcode("fail.test", dns.RcodeServerFailure)
	srv.SetRcode("notimp.test", dns.RcodeNotImplemented)
	srv.SetDelay("slow.test", 2*time.Second)
	r := newResolver(t, srv, 150*time.Millisecond)
	ctx := context.Background()
	check := func(what string, err error, notFound, temporary bool) {
		t.Helper()
		// go/spf uses a type assertion, not errors.As: the error must be
		// a *net.DNSError itself.
		de, ok := err.(*net.DNSError)
		if !ok {
			t.Fatalf("%s: want *net.DNSError, got %T %v", what, err, err)
		}
		if de.IsNotFound != notFound || de.Temporary() != temporary {
			t.Errorf("%s: IsNotFound=%v Temporary=%v, want %v %v", what, de.IsNotFound, de.Temporary(), notFound, temporary)
		}
	}
	_, err := r.LookupTXT(ctx, "nx.test")
	check("NXDOMAIN", err, true, false)
	_, err = r.LookupTXT(ctx, "a.test")
	check("NODATA", err, true, false)
	_, err = r.LookupTXT(ctx, "fail.test")
	check("SERVFAIL", err, false, true)
	_, err = r.LookupTXT(ctx, "notimp.test") // any RCODE but 0 and 3: temperror (RFC 7208 §4.4)
	check("NOTIMP", err, false, true)
	_, err = r.LookupMX(ctx, "slow.test")
	check("timeout", err, false, true)
	_, err = r.LookupIPAddr(ctx, "slow.test")
	check("A/AAAA timeout", err, false, true)
}

// TestSPFTimeoutIsTempError is the reason the error wrapping exists: with
// a resolver returning ctx.Err(), go/spf answers permerror (its spf.go maps
// any error but a temporary *net.DNSError to permerror).
func TestSPFTimeoutIsTempError(t *testing.T) {
	srv := dnstest.New(t, zone...)
	srv.Add(
		"slowspf.test. 300 IN TXT \"v=spf1 a:slow.test -all\"",
		"ok.test. 300 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"",
	)
	srv.SetDelay("slow.test", 3*time.Second)
	r := newResolver(t, srv, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ip := net.ParseIP("192.0.2.1")
	res, err := spf.CheckHostWithSender(ip, "h", "a@slowspf.test", spf.WithResolver(r), spf.WithContext(ctx))
	if res != spf.TempError {
		t.Fatalf("timeout: got %s (%v), want temperror", res, err)
	}
	res, err = spf.CheckHostWithSender(ip, "h", "a@ok.test", spf.WithResolver(r))
	if res != spf.Pass {
		t.Fatalf("ok.test: got %s (%v), want pass", res, err)
	}
	res, _ = spf.CheckHostWithSender(ip, "h", "a@a.test", spf.WithResolver(r))
	if res != spf.None {
		t.Fatalf("NODATA: got %s, want none", res)
	}
}

func TestConfig(t *testing.T) {
	if err := resolver.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults must validate: %v", err)
	}
	bad := resolver.DefaultConfig()
	bad.Server = "127.0.0.1"
	if err := bad.Validate(); err == nil || !strings.HasPrefix(err.Error(), "dns.server:") {
		t.Errorf("server without port: %v", err)
	}
	bad = resolver.DefaultConfig()
	bad.Timeout = 0
	if err := bad.Validate(); err == nil || !strings.HasPrefix(err.Error(), "dns.timeout:") {
		t.Errorf("zero timeout: %v", err)
	}
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("search example.org\nnameserver ::1\nnameserver 10.0.0.1\n"), 0o600)
	got, err := resolver.ServerFromResolvConf(p)
	if err != nil || got != "[::1]:53" {
		t.Errorf("resolv.conf: %q %v", got, err)
	}
	os.WriteFile(p, []byte("search example.org\n"), 0o600)
	if _, err := resolver.ServerFromResolvConf(p); err == nil {
		t.Error("resolv.conf without nameserver must be an error")
	}
}

// TestUnencodableNameIsNotFound: a name no query can carry is not asked
// and is "not found", never a temporary error (RFC 7208 §4.3: SPF says
// none, not temperror, for such a domain).
func TestUnencodableNameIsNotFound(t *testing.T) {
	srv := dnstest.New(t, zone...)
	r := newResolver(t, srv, time.Second)
	long := strings.Repeat("a", 64)
	for _, name := range []string{
		long + ".test", "a..test", ".test", strings.Repeat("abcdefghi.", 26) + "test",
	} {
		m, err := r.Exchange(context.Background(), name, dns.TypeTXT)
		if err != nil || m.Rcode != dns.RcodeNameError {
			t.Errorf("Exchange(%q): %v %v, want NXDOMAIN and no error", name, m, err)
		}
		_, err = r.LookupTXT(context.Background(), name)
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound || resolver.IsTemporary(err) {
			t.Errorf("LookupTXT(%q): %v, want not found", name, err)
		}
		if n := srv.Queries(name, dns.TypeTXT); n != 0 {
			t.Errorf("%q was asked %d times, want never", name, n)
		}
	}
	res, err := spf.CheckHostWithSender(net.ParseIP("192.0.2.1"), "h.test", "a@"+long+".test",
		spf.WithResolver(r))
	if res != spf.None {
		t.Errorf("SPF for a domain with a 64-octet label: %v (%v), want none", res, err)
	}
	if _, ok := dns.IsDomainName(strings.Repeat("a", 63) + ".test"); !ok {
		t.Fatal("a 63-octet label is valid")
	}
	if _, err := r.LookupTXT(context.Background(), strings.Repeat("a", 63)+".test"); err == nil {
		t.Error("63-octet label: want NXDOMAIN from the server")
	}
}

// TestTXTOctets: TXT strings come back as their octets, as net.Resolver
// returns them, not in miekg/dns's escaped presentation form.
func TestTXTOctets(t *testing.T) {
	srv := dnstest.New(t)
	raw := "v=spf1 a:\"q\\\x01\xc3\xa9 -all"
	srv.AddRR(&dns.TXT{Hdr: dns.RR_Header{Name: "octets.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
		Txt: []string{strings.ReplaceAll(raw, `\`, `\\`)}})
	r := newResolver(t, srv, time.Second)
	got, err := r.LookupTXT(context.Background(), "octets.test")
	if err != nil || len(got) != 1 || got[0] != raw {
		t.Fatalf("LookupTXT: %q %v, want %q", got, err, raw)
	}
}
