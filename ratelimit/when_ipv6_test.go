package ratelimit

import (
	"bufio"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// when.server_address names the address Postfix received the connection
// on. Requests carry it unmapped (policy's parseAddr: "::ffff:192.0.2.25"
// is read as 192.0.2.25), so an IPv4-mapped spelling in the config is
// the same address and must select the same requests, as it does in
// allowed_clients (policy.parsePrefix) and the whitelist (parseClient).
// A rule whose condition can never hold is a limit silently not enforced.
func TestWhenServerAddressIPv4Mapped(t *testing.T) {
	cfg, err := load(t, `
rules:
  - name: submission
    key: [sasl_username]
    limit: 3/1h
    when: {server_address: ['::ffff:192.0.2.25']}
`)
	if err != nil {
		t.Fatalf("config refused: %v", err)
	}
	r := &cfg.Rules[0]
	for _, sent := range []string{"192.0.2.25", "::ffff:192.0.2.25"} {
		block := "request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=alice\n" +
			"client_address=2001:db8::7\nserver_address=" + sent + "\n\n"
		req, err := policy.ReadRequest(bufio.NewReader(strings.NewReader(block)), policy.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := r.match(req); !ok {
			t.Errorf("server_address=%s: rule with when.server_address ::ffff:192.0.2.25 does not apply", sent)
		}
	}
}
