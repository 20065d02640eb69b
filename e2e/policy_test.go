package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// baseConfig turns SPF off: these tests have no DNS server (the SPF and DNS
// list tests bring their own), and SPF would only fail open after its
// timeout.
const baseConfig = `
checks:
  spf:
    enabled: false
`

// Postfix really asks mxpolicyd: with default_action=DUNNO a 250 alone
// would also come from a dead daemon, so the daemon's decision log must
// show each recipient, with the client address swaks presented.
// Greylisting is off here so that every check answers DUNNO.
func TestPostfixConsultsMxpolicyd(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	d := startDaemon(t, daemontest.Options{Config: baseConfig + "  greylist:\n    enabled: false\n"})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr})
	res := pf.Swaks(t, postfixtest.Mail{
		From: "alice@sender.test", To: []string{"bob@example.test", "carol@example.test"},
		ClientAddr: "192.0.2.20", Helo: "mail.sender.test", QuitAfter: "RCPT",
	})
	for i := range 2 {
		if res.RcptCode(i) != 250 {
			t.Errorf("RCPT %d: got %v, want 250\n%s", i, res.Rcpt(i), res)
		}
	}
	bob := d.DecisionsFor(t, "bob@example.test", 1)[0]
	carol := d.DecisionsFor(t, "carol@example.test", 1)[0]
	for k, want := range map[string]string{"client": "192.0.2.20", "helo": "mail.sender.test",
		"sender": "alice@sender.test", "action": "DUNNO"} {
		if bob[k] != want {
			t.Errorf("decision %s = %v, want %q", k, bob[k], want)
		}
	}
	// Postfix names the message with the same instance for every
	// recipient: what mxpolicyd's per-message state is keyed by.
	if bob["instance"] == "" || bob["instance"] != carol["instance"] {
		t.Errorf("instance %v for bob and %v for carol, want one non-empty value", bob["instance"], carol["instance"])
	}
}

// A port Postfix does not know reaches the policy service as
// client_port=unknown (smtpd.h, CLIENT_PORT_UNKNOWN; here through XCLIENT
// PORT=[UNAVAILABLE], as a proxy in front of Postfix may send it). The
// request is still decided: a first contact is greylisted, where a
// daemon that dropped the request would leave Postfix its default_action.
func TestPostfixUnknownClientPort(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	d := startDaemon(t, daemontest.Options{Config: greylistConfig, Files: map[string]string{"clients": ""}})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr})
	res := pf.Swaks(t, postfixtest.Mail{From: "alice@sender.test", To: []string{"grace@example.test"},
		ClientAddr: "192.0.2.22", ClientPort: "[UNAVAILABLE]", Helo: "mail.sender.test", QuitAfter: "RCPT"})
	if res.RcptCode(0) != 450 || !strings.Contains(res.Rcpt(0).Text, "Greylisted") {
		t.Fatalf("RCPT: got %v, want 450 ... Greylisted\n%s", res.Rcpt(0), res)
	}
	if rec := d.DecisionsFor(t, "grace@example.test", 1)[0]; rec["client"] != "192.0.2.22" {
		t.Errorf("decision client %v, want 192.0.2.22", rec["client"])
	}
}

// Postfix reaches mxpolicyd over a unix socket too (contrib's
// main.cf.unix.snippet). smtpd runs as the postfix user, so the socket's
// mode must let it in: socket_mode 0666 stands in for the group setup
// contrib describes.
func TestPostfixOverUnixSocket(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	d := startDaemon(t, daemontest.Options{
		Config: baseConfig + "  greylist:\n    enabled: false\nsocket_mode: \"0666\"\n",
		Listen: []string{"unix:$DIR/policy.sock"},
	})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: filepath.Join(d.Dir, "policy.sock")})
	res := pf.Swaks(t, postfixtest.Mail{From: "alice@sender.test", To: []string{"frank@example.test"},
		ClientAddr: "192.0.2.21", QuitAfter: "RCPT"})
	if res.RcptCode(0) != 250 {
		t.Errorf("RCPT: got %v, want 250\n%s", res.Rcpt(0), res)
	}
	if rec := d.DecisionsFor(t, "frank@example.test", 1)[0]; rec["client"] != "192.0.2.21" {
		t.Errorf("decision client %v, want 192.0.2.21", rec["client"])
	}
}

// greylistConfig uses a 2 s delay. The daemon runs on the real clock here
// (Postfix and swaks cannot share an injected one), so "retry after the
// delay" costs a real wait; 2 s keeps it short while leaving the early
// retry room to land inside the delay on a loaded machine (greylist.delay
// accepts 1 s at least). The greylisting logic itself is tested on an
// injected clock in greylist/.
const greylistConfig = baseConfig + `
greylist:
  delay: 2s
whitelist:
  clients_files: [$DIR/clients]
`

// greylistDelay is greylistConfig's greylist.delay.
const greylistDelay = 2 * time.Second

func TestGreylistingThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	eachStore(t, testGreylisting)
}

func testGreylisting(t *testing.T, database string) {
	d := startDaemon(t, daemontest.Options{Config: greylistConfig, Database: database,
		Files: map[string]string{"clients": "192.0.2.50\n"}})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr})
	mail := postfixtest.Mail{From: "alice@sender.test", To: []string{"bob@example.test"},
		ClientAddr: "192.0.2.30", Helo: "mail.sender.test", QuitAfter: "RCPT"}
	first := time.Now()
	res := pf.Swaks(t, mail)
	firstDone := time.Now() // the first contact ended: its triplet is recorded
	if res.RcptCode(0) != 450 || !strings.Contains(res.Rcpt(0).Text, "Greylisted") {
		t.Fatalf("first contact: RCPT got %v, want 450 ... Greylisted\n%s", res.Rcpt(0), res)
	}
	res = pf.Swaks(t, mail)
	if time.Since(first) >= greylistDelay {
		t.Fatalf("the early retry came %v after the first attempt, not before the %v delay: inconclusive", time.Since(first), greylistDelay)
	}
	if res.RcptCode(0) != 450 {
		t.Fatalf("early retry: RCPT got %v, want 450\n%s", res.Rcpt(0), res)
	}

	time.Sleep(time.Until(firstDone.Add(greylistDelay + 250*time.Millisecond)))
	mail.QuitAfter, mail.Body = "", "greylisting passed\n"
	res = pf.Swaks(t, mail)
	if res.RcptCode(0) != 250 || res.DataEnd().Code != 250 {
		t.Fatalf("retry after the delay: RCPT %v, end of DATA %v, want 250 and 250\n%s", res.Rcpt(0), res.DataEnd(), res)
	}
	msgs := pf.WaitDelivered(t, 1, 30*time.Second)
	if !strings.Contains(msgs[0], "greylisting passed") {
		t.Errorf("delivered message lacks its body:\n%s", msgs[0])
	}
	for i, rec := range d.DecisionsFor(t, "bob@example.test", 3)[:2] {
		if rec["check"] != "greylist" {
			t.Errorf("decision %d: check %v, want greylist", i, rec["check"])
		}
	}

	// A whitelisted client is never greylisted.
	res = pf.Swaks(t, postfixtest.Mail{From: "dave@partner.test", To: []string{"erin@example.test"},
		ClientAddr: "192.0.2.50", QuitAfter: "RCPT"})
	if res.RcptCode(0) != 250 {
		t.Fatalf("whitelisted client, first contact: RCPT got %v, want 250\n%s", res.Rcpt(0), res)
	}
	if rec := d.DecisionsFor(t, "erin@example.test", 1)[0]; rec["check"] != "whitelist" {
		t.Errorf("whitelisted client: decided by check %v, want whitelist", rec["check"])
	}
}
