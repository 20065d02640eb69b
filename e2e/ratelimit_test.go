package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// ratelimitMainCF is the README's submission wiring ("Rate limits",
// Postfix wiring) on the test instance's one smtpd: SASL on, so XCLIENT
// LOGIN authenticates and Postfix sends sasl_username (XCLIENT_README);
// the policy service asked before permit_sasl_authenticated; and asked
// again at END-OF-MESSAGE, where Postfix first sends the real size
// (SMTPD_POLICY_README, "size"). So an accepted message is decided twice,
// at RCPT and at END-OF-MESSAGE, and a message refused at RCPT once.
func ratelimitMainCF(policy string) map[string]string {
	ask := "check_policy_service { inet:" + policy + ", timeout=10s, default_action=DUNNO }"
	return map[string]string{
		"smtpd_sasl_auth_enable":         "yes",
		"smtpd_recipient_restrictions":   ask + ", permit_sasl_authenticated, reject_unauth_destination",
		"smtpd_end_of_data_restrictions": ask,
	}
}

// ratelimitConfig leaves the rate-limit check alone to decide: SPF and
// greylisting are off. Its share is raised from 0.25s to 3s (greylisting's
// and SPF's shares are free) so a slow shared test host cannot make it
// fail open and pass mail the test expects it to refuse.
const ratelimitConfig = `
checks:
  spf:
    enabled: false
  greylist:
    enabled: false
  ratelimit:
    timeout: 3s
ratelimit:
  rules:
`

// rlRig is one daemon with rules, its metrics URL, and a Postfix in front.
type rlRig struct {
	d       *daemontest.Daemon
	pf      *postfixtest.Postfix
	metrics string
}

// eachRateLimitStore runs test against the embedded SQLite store and
// PostgreSQL: the counters are one transaction on the first and one
// statement on the second (ratelimit/store.go).
func eachRateLimitStore(t *testing.T, test func(t *testing.T, database string)) {
	postfixtest.Require(t, "postfix", "postqueue", "swaks")
	t.Parallel()
	eachStore(t, test)
}

func startRateLimit(t *testing.T, database, rules string) *rlRig {
	t.Helper()
	lines, url := metricsConfig(t)
	d := startDaemon(t, daemontest.Options{Config: ratelimitConfig + rules + lines, Database: database})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr, ExtraMainCF: ratelimitMainCF(d.Addr)})
	return &rlRig{d: d, pf: pf, metrics: url}
}

// send sends one whole message to rcpt from client, authenticated as
// login unless login is empty.
func (r *rlRig) send(t *testing.T, login, client, rcpt, body string) *postfixtest.Result {
	t.Helper()
	from := "stranger@outside.test"
	if login != "" {
		from = login + "@" + postfixtest.Domain
	}
	return r.pf.Swaks(t, postfixtest.Mail{From: from, To: []string{rcpt}, ClientAddr: client,
		Login: login, Helo: "client.outside.test", Body: body})
}

// accepted fails the test unless the message was accepted whole.
func accepted(t *testing.T, what string, res *postfixtest.Result) {
	t.Helper()
	if res.RcptCode(0) != 250 || res.DataEnd().Code != 250 {
		t.Fatalf("%s: RCPT %v, end of data %v; want 250 and 250\n%s", what, res.Rcpt(0), res.DataEnd(), res)
	}
}

// deferred fails the test unless got is the rule's default deferral of
// alice (ratelimit.DefaultActionText). Postfix keeps the 4.7.1 and puts
// the recipient, or <END-OF-MESSAGE>, before the text: "450 4.7.1
// <a3@example.test>: Recipient address rejected: per-user: alice sends
// too fast, try again later".
func deferred(t *testing.T, what string, got postfixtest.Reply, rule string, res *postfixtest.Result) {
	t.Helper()
	want := rule + ": alice sends too fast, try again later"
	if got.Code != 450 || !strings.HasPrefix(got.Text, "4.7.1 ") || !strings.HasSuffix(got.Text, want) {
		t.Fatalf("%s: %v, want 450 4.7.1 ...%s\n%s", what, got, want, res)
	}
}

// decidedBy fails the test unless rec is the rate-limit check's answer
// verb with the reason naming the rule.
func decidedBy(t *testing.T, rec map[string]any, verb, reason string) {
	t.Helper()
	if rec["check"] != "ratelimit" || !strings.HasPrefix(fmt.Sprint(rec["action"]), verb+" ") || rec["reason"] != reason {
		t.Errorf("decision check=%v action=%q reason=%q, want check=ratelimit action=%s ... reason=%q",
			rec["check"], rec["action"], rec["reason"], verb, reason)
	}
}

// atRCPT returns the decision at RCPT about rcpt, of the n it must have.
// It is the first: Postfix asks END-OF-MESSAGE only after the RCPT reply
// on the same connection, and the engine logs a decision before the
// reply is written (policy.Engine.Decide).
func atRCPT(t *testing.T, r *rlRig, rcpt string, n int) map[string]any {
	t.Helper()
	return r.d.DecisionsFor(t, rcpt, n)[0]
}

func hits(t *testing.T, r *rlRig, rule string) float64 {
	t.Helper()
	return metricValue(t, r.metrics, `mxpolicyd_ratelimit_hits_total{rule="`+rule+`"}`)
}

// An authenticated user sends three messages an hour; the fourth is
// deferred at RCPT with the rule's reply, which names the login: so
// Postfix passed XCLIENT LOGIN on as sasl_username. Another user still
// sends, and unauthenticated mail is never counted.
func TestRateLimitMessagesThroughPostfix(t *testing.T) {
	eachRateLimitStore(t, func(t *testing.T, database string) {
		// burst unset is the limit's N: exactly 3 at once from rest.
		r := startRateLimit(t, database, `
    - name: per-user
      key: [sasl_username]
      limit: 3/1h
      when: {authenticated: true}
`)
		for i := range 4 {
			rcpt := fmt.Sprintf("in%d@%s", i, postfixtest.Domain)
			accepted(t, "unauthenticated "+rcpt, r.send(t, "", "198.51.100.7", rcpt, ""))
			if rec := atRCPT(t, r, rcpt, 2); rec["check"] == "ratelimit" || rec["action"] != "DUNNO" {
				t.Errorf("unauthenticated %s: check=%v action=%v, want DUNNO from no rate rule", rcpt, rec["check"], rec["action"])
			}
		}
		for i := range 3 {
			rcpt := fmt.Sprintf("a%d@%s", i, postfixtest.Domain)
			accepted(t, "alice's message "+rcpt, r.send(t, "alice", "192.0.2.10", rcpt, ""))
			rec := atRCPT(t, r, rcpt, 2)
			if rec["check"] != "ratelimit" || !strings.Contains(fmt.Sprint(rec["reason"]), "within rate limits") {
				t.Errorf("alice's message %s: check=%v reason=%q, want ratelimit: within rate limits", rcpt, rec["check"], rec["reason"])
			}
		}
		rcpt := "a3@" + postfixtest.Domain
		res := r.send(t, "alice", "192.0.2.10", rcpt, "")
		deferred(t, "alice's fourth message at RCPT", res.Rcpt(0), "per-user", res)
		decidedBy(t, atRCPT(t, r, rcpt, 1), "DEFER_IF_PERMIT", "per-user: over its limit")
		accepted(t, "bob's message", r.send(t, "bob", "192.0.2.11", "b0@"+postfixtest.Domain, ""))

		r.pf.WaitDelivered(t, 4+3+1, 30*time.Second)
		if v := hits(t, r, "per-user"); v != 1 {
			t.Errorf("mxpolicyd_ratelimit_hits_total{rule=per-user} = %v, want 1", v)
		}
	})
}

// One login from a third client /24 within the hour: Postfix answers 250
// but puts the message on hold (access(5), HOLD); nothing leaves. Two
// addresses in one /24 are one network.
func TestRateLimitDistinctNetworksHold(t *testing.T) {
	eachRateLimitStore(t, func(t *testing.T, database string) {
		r := startRateLimit(t, database, `
    - name: stolen-login
      kind: distinct_networks
      key: [sasl_username]
      limit: 2/1h
      prefix_v4: 24
`)
		for i, client := range []string{"192.0.2.10", "192.0.2.99", "198.51.100.10"} {
			accepted(t, "alice from "+client, r.send(t, "alice", client, fmt.Sprintf("n%d@%s", i, postfixtest.Domain), ""))
		}
		rcpt := "n3@" + postfixtest.Domain
		res := r.send(t, "alice", "203.0.113.10", rcpt, "")
		accepted(t, "alice from a third network", res)
		decidedBy(t, atRCPT(t, r, rcpt, 2), "HOLD", "stolen-login: too many networks")
		const warn = "ratelimit: key seen from too many client networks"
		r.d.WaitLog(t, warn)
		if w := r.d.Records(warn)[0]; w["rule"] != "stolen-login" || w["key"] != "alice" || w["networks"] != 3.0 {
			t.Errorf("%s: rule=%v key=%v networks=%v, want stolen-login alice 3", warn, w["rule"], w["key"], w["networks"])
		}
		accepted(t, "bob from the same client", r.send(t, "bob", "203.0.113.10", "n4@"+postfixtest.Domain, ""))

		r.pf.WaitDelivered(t, 4, 30*time.Second)
		_, id, _ := strings.Cut(res.DataEnd().Text, "queued as ")
		q := r.pf.Queue(t)
		if len(q) != 1 || q[0].Queue != "hold" || q[0].ID != strings.TrimSpace(id) ||
			len(q[0].Recipients) != 1 || q[0].Recipients[0].Address != rcpt {
			t.Errorf("queue %+v, want only %s to %s in hold\n%s", q, strings.TrimSpace(id), rcpt, r.pf.Log())
		}
		if v := hits(t, r, "stolen-login"); v != 1 {
			t.Errorf("mxpolicyd_ratelimit_hits_total{rule=stolen-login} = %v, want 1", v)
		}
	})
}

// A byte quota decides at END-OF-MESSAGE, where Postfix sends the real
// size (SMTPD_POLICY_README, "size"): two messages of about 4.5 kB fit in
// 10000 bytes an hour, the third is deferred after its data.
func TestRateLimitBytesAtEndOfMessage(t *testing.T) {
	eachRateLimitStore(t, func(t *testing.T, database string) {
		r := startRateLimit(t, database, `
    - name: per-user-bytes
      key: [sasl_username]
      count: bytes
      limit: 10000/1h
`)
		body := strings.Repeat(strings.Repeat("x", 78)+"\n", 50) // 4000 bytes with CRLF
		for i := range 2 {
			accepted(t, "alice's message", r.send(t, "alice", "192.0.2.10", fmt.Sprintf("s%d@%s", i, postfixtest.Domain), body))
		}
		rcpt := "s2@" + postfixtest.Domain
		res := r.send(t, "alice", "192.0.2.10", rcpt, body)
		if res.RcptCode(0) != 250 {
			t.Fatalf("alice's third message: RCPT %v, want 250: a bytes rule waits for the size\n%s", res.Rcpt(0), res)
		}
		deferred(t, "alice's third message at end of data", res.DataEnd(), "per-user-bytes", res)
		// Two decisions: DUNNO at RCPT, the deferral at END-OF-MESSAGE.
		recs := r.d.DecisionsFor(t, rcpt, 2)
		decidedBy(t, recs[1], "DEFER_IF_PERMIT", "per-user-bytes: over its limit")
		accepted(t, "bob's message", r.send(t, "bob", "192.0.2.11", "s3@"+postfixtest.Domain, body))

		r.pf.WaitDelivered(t, 3, 30*time.Second)
		if v := hits(t, r, "per-user-bytes"); v != 1 {
			t.Errorf("mxpolicyd_ratelimit_hits_total{rule=per-user-bytes} = %v, want 1", v)
		}
	})
}
