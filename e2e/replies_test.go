package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
	"github.com/mxpolicyd/mxpolicyd/replies"
)

// repliesMainCF is a submission setup on the one smtpd: SASL on, so
// XCLIENT LOGIN authenticates (XCLIENT_README) and Postfix sends
// sasl_username; and the policy service asked before
// permit_sasl_authenticated, as the README's submission entry does, so
// mxpolicyd sees the authenticated mail. smtpd_relay_restrictions keeps
// its default (permit_sasl_authenticated, defer_unauth_destination), so
// only the authenticated client may relay.
func repliesMainCF(policy string) map[string]string {
	return map[string]string{
		"smtpd_sasl_auth_enable": "yes",
		"smtpd_recipient_restrictions": "check_policy_service { inet:" + policy +
			", timeout=10s, default_action=DUNNO }, permit_sasl_authenticated, reject_unauth_destination",
	}
}

// A local user writes to an outside address; the reply from that address
// passes greylisting at once, while a stranger writing to the same user
// is greylisted.
func TestRepliesThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	eachStore(t, testReplies)
}

func testReplies(t *testing.T, database string) {
	d := startDaemon(t, daemontest.Options{Config: baseConfig, Database: database})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr, ExtraMainCF: repliesMainCF(d.Addr)})
	user := "alice@" + postfixtest.Domain

	// Submission: stop after RCPT, there is no transport to the outside.
	res := pf.Swaks(t, postfixtest.Mail{From: user, To: []string{"bob@outside.test"},
		ClientAddr: "192.0.2.80", Login: "alice", QuitAfter: "RCPT"})
	if res.RcptCode(0) != 250 {
		t.Fatalf("authenticated send: RCPT got %v, want 250\n%s", res.Rcpt(0), res)
	}
	if rec := d.DecisionsFor(t, "bob@outside.test", 1)[0]; rec["action"] != "DUNNO" {
		t.Errorf("authenticated send: action %v, want DUNNO", rec["action"])
	}

	reply := func(from string) *postfixtest.Result {
		return pf.Swaks(t, postfixtest.Mail{From: from, To: []string{user},
			ClientAddr: "198.51.100.9", Helo: "mx.outside.test", QuitAfter: "RCPT"})
	}
	if res := reply("bob@outside.test"); res.RcptCode(0) != 250 {
		t.Fatalf("reply from the address written to: RCPT got %v, want 250\n%s", res.Rcpt(0), res)
	}
	if res := reply("mallory@outside.test"); res.RcptCode(0) != 450 || !strings.Contains(res.Rcpt(0).Text, "Greylisted") {
		t.Fatalf("stranger: RCPT got %v, want 450 ... Greylisted\n%s", res.Rcpt(0), res)
	}
	recs := d.DecisionsFor(t, user, 2)
	if got := fmt.Sprint(recs[0]["check"], ": ", recs[0]["reason"]); got != replies.Name+": "+replies.Reason {
		t.Errorf("reply decided by %q, want %q", got, replies.Name+": "+replies.Reason)
	}
	if recs[1]["check"] != "greylist" {
		t.Errorf("stranger decided by check %v, want greylist", recs[1]["check"])
	}
}
