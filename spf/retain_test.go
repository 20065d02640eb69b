package spf

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"unsafe"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// fakeDNS answers the records of a few domains, each TXT answer padded
// with a large record that is not SPF, as a sender's DNS may.
type fakeDNS map[string]string

func (f fakeDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	if rec, ok := f[strings.TrimSuffix(strings.ToLower(name), ".")]; ok {
		return []string{rec, strings.Repeat("x", 40<<10)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}
func (fakeDNS) LookupMX(_ context.Context, n string) ([]*net.MX, error) {
	return nil, &net.DNSError{Err: "no such host", Name: n, IsNotFound: true}
}
func (fakeDNS) LookupIPAddr(_ context.Context, n string) ([]net.IPAddr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: n, IsNotFound: true}
}
func (fakeDNS) LookupAddr(_ context.Context, n string) ([]string, error) {
	return nil, &net.DNSError{Err: "no such host", Name: n, IsNotFound: true}
}

// What the caches keep outlives the request: a verdict keeps the DNS
// answers only for a fail's explanation, and not when they are large;
// keys and values hold copies of the request's strings, never substrings
// of the whole request (up to max_request_bytes) that ReadRequest made.
func TestCachesKeepLittle(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Receiver = "mx.local.test"
	c, err := New(cfg, fakeDNS{"neutral.test": "v=spf1 ?all", "fail.test": "v=spf1 -all",
		"mail.neutral.test": "v=spf1 ?all"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var reqs []*policy.Request
	for _, sender := range []string{"a@neutral.test", "b@fail.test"} {
		text := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.99\n" +
			"helo_name=mail.neutral.test\nsender=" + sender + "\nrecipient=u@local.test\ninstance=i1\n\n"
		req, err := policy.ReadRequest(bufio.NewReader(strings.NewReader(text)), policy.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, req)
		if _, err := c.Check(context.Background(), &policy.State{Req: req, Msg: policy.NewMessage(req.Instance)}); err != nil {
			t.Fatal(err)
		}
		c.Quick(&policy.State{Req: req, Msg: policy.NewMessage("i2")}) // builds the cached outcome
	}
	shared := func(s string) bool { // s lies inside one of the request's strings
		if s == "" {
			return false
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		for _, r := range reqs {
			for _, f := range []string{r.HeloName, r.Sender} {
				if f == "" {
					continue
				}
				start := uintptr(unsafe.Pointer(unsafe.StringData(f)))
				if p >= start && p < start+uintptr(len(f)) {
					return true
				}
			}
		}
		return false
	}
	for k, v := range c.senders.m {
		if v.v.dns != nil {
			t.Errorf("verdict %s for %s keeps the evaluation's DNS answers", v.v.result, k.domain)
		}
		if shared(k.helo) || shared(k.domain) || shared(k.sender) {
			t.Errorf("sender key %+v shares the request's memory", k)
		}
	}
	for k, v := range c.helos.m {
		if shared(k.helo) || shared(v.v.vars.helo) || shared(v.v.vars.domain) {
			t.Errorf("HELO entry %+v shares the request's memory", k)
		}
	}
	for k, v := range c.outcomes.m {
		if shared(k.helo) || shared(k.sender) || shared(v.v.vars.helo) || shared(v.v.vars.sender) {
			t.Errorf("outcome %+v shares the request's memory", k)
		}
	}
	if len(c.senders.m) != 1 || len(c.outcomes.m) != 1 {
		t.Errorf("%d verdicts and %d outcomes cached, want 1 and 1 (the fail, its answers over %d bytes, is not)",
			len(c.senders.m), len(c.outcomes.m), maxKeptAnswers)
	}
}
