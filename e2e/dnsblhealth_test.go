package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// A DNS list that answers every query as listed, as a list shut down with
// a wildcard record does, fails its self-check (RFC 5782 §5: 127.0.0.1
// must not be listed) at the daemon's first probe: a client it would list
// gets 250, not 554, and /readyz and the gauge say why. With its records
// fixed, the next probe brings it back and it rejects listed clients again.
func TestDNSListSelfCheckThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	srv := dnstest.New(t,
		"wild.test. 300 IN SOA ns.wild.test. hostmaster.wild.test. 1 3600 600 86400 60",
		"*.wild.test. 300 IN A 127.0.0.2",
	)
	metricsLines, metricsURL := metricsConfig(t)
	readyURL := strings.TrimSuffix(metricsURL, "/metrics") + "/readyz"
	d := startDaemon(t, daemontest.Options{Config: dnsConfig(srv) + metricsLines + `
dnsbl:
  lists: ["wild.test=127.0.0.[2..11]"]
  self_check_interval: 10s
checks:
  greylist:
    enabled: false
`})
	d.WaitLog(t, "dnsbl: list failed its self-check, ignored until it passes")
	if body := waitReadyz(t, readyURL, "dnsbl wild.test: unhealthy", 5*time.Second); !strings.Contains(body,
		"answered 127.0.0.2 for 127.0.0.1") {
		t.Errorf("/readyz does not give the answer that failed the list:\n%s", body)
	}
	if v := metricValue(t, metricsURL, `mxpolicyd_dnsbl_list_healthy{list="wild.test"}`); v != 0 {
		t.Errorf("mxpolicyd_dnsbl_list_healthy{list=\"wild.test\"} = %v, want 0", v)
	}
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr})
	mail := postfixtest.Mail{From: "alice@sender.test", To: []string{"bob@example.test"},
		ClientAddr: "192.0.2.99", Helo: "mail.sender.test", QuitAfter: "RCPT"}
	if res := pf.Swaks(t, mail); res.RcptCode(0) != 250 {
		t.Fatalf("client listed only by the broken list: RCPT got %v, want 250\n%s", res.Rcpt(0), res)
	}

	srv.Remove("*.wild.test")
	if err := srv.Add("2.0.0.127.wild.test. 300 IN A 127.0.0.2", "99.2.0.192.wild.test. 300 IN A 127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	// The next probe is at most self_check_interval away.
	waitReadyz(t, readyURL, "dnsbl wild.test: healthy", 20*time.Second)
	if v := metricValue(t, metricsURL, `mxpolicyd_dnsbl_list_healthy{list="wild.test"}`); v != 1 {
		t.Errorf("mxpolicyd_dnsbl_list_healthy{list=\"wild.test\"} = %v after the fix, want 1", v)
	}
	mail.To = []string{"carol@example.test"}
	res := pf.Swaks(t, mail)
	if r := res.Rcpt(0); r.Code != 554 || !strings.Contains(r.Text, "blocked using wild.test") {
		t.Errorf("listed client after the list recovered: RCPT got %v, want 554 naming wild.test\n%s", r, res)
	}
	if n := len(d.Records("dnsbl: list failed its self-check, ignored until it passes")); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}
	if n := len(d.Records("dnsbl: list passes its self-check again, in use")); n != 1 {
		t.Errorf("the recovery was logged %d times, want once", n)
	}
}

// waitReadyz polls /readyz until its body contains want, and returns the
// body. /readyz stays 200 throughout: a broken list is not a broken daemon.
func waitReadyz(t *testing.T, url, want string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s, want 200 whatever the lists' state\n%s", url, resp.Status, b)
		}
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never said %q within %s:\n%s", want, within, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
