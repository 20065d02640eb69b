// Package spftest loads the SPF test suite of RFC 7208 (the
// "rfc7208-tests.yml" of the pyspf project, as go/spf ships it in its
// module's testdata) and serves each suite's zone data from an in-process
// DNS server, so that tests can send its cases through mxpolicyd as mail.
package spftest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
)

// Suite is one YAML document of the file: a description, the DNS data
// and the cases evaluated against it.
type Suite struct {
	Description string
	Tests       map[string]Test
	ZoneData    map[string][]Record `yaml:"zonedata"`
}

// Test is one case: the client, its HELO name and MAIL FROM, and the
// results the RFC allows (any one of them is right).
type Test struct {
	Description string
	Spec        strings1
	Helo        string
	Host        string
	MailFrom    string `yaml:"mailfrom"`
	Result      strings1
	Explanation string
}

// Allows reports whether result is one the test accepts.
func (t Test) Allows(result string) bool { return slices.Contains(t.Result, result) }

// Record is one entry of a name's zone data; one field is set.
type Record struct {
	A        strings1 `yaml:"A"`
	AAAA     strings1 `yaml:"AAAA"`
	SPF      strings1 `yaml:"SPF"`
	TXT      strings1 `yaml:"TXT"`
	PTR      strings1 `yaml:"PTR"`
	MX       []any    `yaml:"MX"`
	CNAME    string   `yaml:"CNAME"`
	TIMEOUT  bool     `yaml:"TIMEOUT"`
	SERVFAIL bool     `yaml:"SERVFAIL"`
}

// strings1 reads a string or a list of strings.
type strings1 []string

func (s *strings1) UnmarshalYAML(n *yaml.Node) error {
	var list []string
	if err := n.Decode(&list); err == nil {
		*s = list
		return nil
	}
	var one string
	if err := n.Decode(&one); err != nil {
		return err
	}
	*s = []string{one}
	return nil
}

// Path locates rfc7208-tests.yml in the go/spf module this repository
// builds with, through the go command (the module is in the module cache
// whenever the tests compile).
func Path() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "blitiri.com.ar/go/spf").Output()
	if err != nil {
		return "", fmt.Errorf("spftest: locating go/spf: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "testdata", "rfc7208-tests.yml"), nil
}

// Load reads every suite of the file at path.
func Load(path string) ([]Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var suites []Suite
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var s Suite
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			return suites, nil
		} else if err != nil {
			return nil, fmt.Errorf("spftest: %s: %w", path, err)
		}
		suites = append(suites, s)
	}
}

// MustLoad is Path and Load for tests.
func MustLoad(t testing.TB) []Suite {
	t.Helper()
	p, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Serve starts a DNS server answering the suite's zone data. A TIMEOUT
// entry answers SERVFAIL: the suite means the domain's servers do not
// answer, which a recursive resolver reports as SERVFAIL, whereas our own
// resolver's silence is a different case (spf.ErrResolver). SPF-type
// entries are served as TXT where a name has no TXT of its own, as go/spf's
// yml_test.go does: RFC 7208 §3.1 left the SPF RR type behind.
func (s Suite) Serve(t testing.TB) *dnstest.Server {
	t.Helper()
	srv := dnstest.New(t)
	for name, recs := range s.ZoneData {
		rrs, rcode := zone(name, recs)
		srv.AddRR(rrs...)
		if rcode != dns.RcodeSuccess {
			srv.SetRcode(presentation(name), rcode)
		}
	}
	return srv
}

func zone(name string, recs []Record) ([]dns.RR, int) {
	owner := presentation(name)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: 300}
	}
	var rrs []dns.RR
	// TXT "NONE" is pyspf's way to say the name has no TXT data, and
	// also that its SPF-type data must not stand in for TXT.
	rcode, hasTXT, answersTXT := dns.RcodeSuccess, false, false
	for _, r := range recs {
		hasTXT = hasTXT || len(r.TXT) > 0
		answersTXT = answersTXT || slices.ContainsFunc(r.TXT, func(t string) bool { return t != "NONE" })
	}
	for _, r := range recs {
		if r.TIMEOUT && !answersTXT || r.SERVFAIL {
			// pyspf's test DNS times out for the types a name has no
			// data for; a name with TXT data answers it (case spftimeout).
			rcode = dns.RcodeServerFailure
		}
		for _, a := range append(slices.Clone(r.A), r.AAAA...) {
			ip := net.ParseIP(a)
			if ip.To4() != nil {
				rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: ip.To4()})
			} else if ip != nil {
				rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
			}
		}
		for _, txt := range r.TXT {
			if txt != "NONE" {
				rrs = append(rrs, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: chunks(txt)})
			}
		}
		if len(r.SPF) > 0 && !hasTXT {
			rrs = append(rrs, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: chunks(strings.Join(r.SPF, ""))})
		}
		for _, p := range r.PTR {
			rrs = append(rrs, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(p)})
		}
		if len(r.MX) == 2 {
			pref, _ := r.MX[0].(int)
			host, _ := r.MX[1].(string)
			rrs = append(rrs, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(pref), Mx: dns.Fqdn(host)})
		}
		if r.CNAME != "" {
			rrs = append(rrs, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: dns.Fqdn(r.CNAME)})
		}
	}
	return rrs, rcode
}

// presentation is name as the server sees it in a query: miekg/dns
// escapes octets such as spaces when it reads a name off the wire.
func presentation(name string) string {
	buf := make([]byte, 512)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return dns.Fqdn(name)
	}
	s, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return dns.Fqdn(name)
	}
	return s
}

// chunks splits a TXT value into the 255-octet character-strings of its
// wire form (RFC 1035 §3.3.14), escaped as miekg/dns packs them: only a
// backslash is special in its presentation form.
func chunks(s string) []string {
	var out []string
	for {
		n := min(len(s), 255)
		out = append(out, strings.ReplaceAll(s[:n], `\`, `\\`))
		if s = s[n:]; s == "" {
			return out
		}
	}
}
