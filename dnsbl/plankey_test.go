package dnsbl

import (
	"bufio"
	"strings"
	"testing"
	"unsafe"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// A kept plan's key holds copies of the request's strings, not substrings
// of the whole request ReadRequest read, which it would keep alive.
func TestPlanKeyOwnsItsStrings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Lists = []List{{Site: "zen.test"}, {Site: "dbl.test", Kind: KindDomain}}
	c, err := New(cfg, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	text := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.99\n" +
		"client_name=mail.example.org\nhelo_name=mail.example.org\nsender=a@example.org\nrecipient=u@local.test\n\n"
	r, err := policy.ReadRequest(bufio.NewReader(strings.NewReader(text)), policy.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	c.planFor(r)
	within := func(s, of string) bool {
		if s == "" || of == "" {
			return false
		}
		p, start := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(of)))
		return p >= start && p < start+uintptr(len(of))
	}
	if len(c.plans.m) != 1 {
		t.Fatalf("%d plans kept, want 1", len(c.plans.m))
	}
	for k := range c.plans.m {
		for _, f := range []string{r.Sender, r.HeloName, r.ClientName} {
			if within(k.sender, f) || within(k.helo, f) || within(k.name, f) {
				t.Errorf("plan key %+v shares the request's memory", k)
			}
		}
	}
}
