package e2e

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// The ClamAV sidecar, wired as contrib/ tells an admin to:
// clamd and clamav-milter run from contrib/clamav's files (test ports and
// paths put first), and Postfix gets contrib/postfix's milter_* lines.
// Proven: EICAR is rejected at end of DATA; a clean message from the same
// client passes mxpolicyd (after greylisting) and ClamAV and is
// delivered; with the scanner down, then the milter down, mail is deferred
// with a 4xx, so the sender keeps it, and nothing is delivered.
func TestClamAVSidecar(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks", "clamd", "clamav-milter")
	t.Parallel()
	cav := postfixtest.StartClamAV(t, postfixtest.ClamAVOptions{ContribDir: "../contrib/clamav"})
	d := startDaemon(t, daemontest.Options{Config: greylistConfig, Files: map[string]string{"clients": ""}})
	extra := contribMilterParams(t, "../contrib/postfix/main.cf.snippet")
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr, Milters: cav.Milter, ExtraMainCF: extra})

	mail := postfixtest.Mail{From: "alice@sender.test", To: []string{"bob@example.test"},
		ClientAddr: "192.0.2.40", Helo: "mail.sender.test", Body: "a clean message\n"}
	passGreylisting(t, pf, mail)
	res := pf.Swaks(t, mail)
	if res.RcptCode(0) != 250 || res.DataEnd().Code != 250 {
		t.Fatalf("clean message: RCPT %v, end of DATA %v, want 250 and 250\n%s", res.Rcpt(0), res.DataEnd(), res)
	}
	msgs := pf.WaitDelivered(t, 1, 30*time.Second)
	if !strings.Contains(msgs[0], "X-Virus-Status: Clean") {
		t.Errorf("delivered message has no X-Virus-Status: Clean header from clamav-milter:\n%s", msgs[0])
	}

	virus := mail
	virus.Body, virus.Attach = "see the attachment\n", postfixtest.EICAR
	res = pf.Swaks(t, virus)
	if got := res.DataEnd(); got.Code != 550 || !strings.Contains(got.Text, "Mxpolicyd-Test-EICAR") {
		t.Errorf("EICAR: end of DATA %v, want 550 naming the signature\n%s", got, res)
	}

	cav.StopClamd()
	res = pf.Swaks(t, mail)
	if got := res.DataEnd(); res.RcptCode(0) != 250 || got.Code/100 != 4 {
		t.Errorf("scanner down: end of DATA %v, want 4xx (clamav-milter OnFail Defer)\n%s", got, res)
	}
	cav.StopMilter()
	res = pf.Swaks(t, mail)
	if got := firstFailure(res); got.Code/100 != 4 {
		t.Errorf("milter down: first failure %v, want 4xx (milter_default_action = tempfail)\n%s", got, res)
	}
	// Every later message got a 4xx or 5xx at SMTP time, so none can have
	// entered the queue; the maildir still holds only the first one.
	if n := len(pf.Delivered()); n != 1 {
		t.Errorf("%d messages delivered, want only the first clean one", n)
	}
}

// passGreylisting makes the first contact for mail's triplet, which must be
// greylisted, then waits out greylistConfig's delay.
func passGreylisting(t *testing.T, pf *postfixtest.Postfix, mail postfixtest.Mail) {
	t.Helper()
	mail.QuitAfter = "RCPT"
	if res := pf.Swaks(t, mail); res.RcptCode(0) != 450 {
		t.Fatalf("first contact: RCPT %v, want 450 (greylisted)\n%s", res.Rcpt(0), res)
	}
	time.Sleep(greylistDelay + 250*time.Millisecond) // from the first contact's end
}

// contribMilterParams reads the milter_* parameters from the main.cf lines
// contrib gives admins, so the test runs Postfix as they will.
func contribMilterParams(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	params := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		k = strings.TrimSpace(k)
		if ok && strings.HasPrefix(k, "milter_") {
			params[k] = strings.TrimSpace(v)
		}
	}
	if params["milter_default_action"] != "tempfail" {
		t.Fatalf("%s: milter_default_action = %q, want tempfail", path, params["milter_default_action"])
	}
	return params
}

// firstFailure returns the first reply that is neither 2xx nor 3xx.
func firstFailure(res *postfixtest.Result) postfixtest.Reply {
	for _, s := range res.Steps {
		if s.Reply.Code >= 400 {
			return s.Reply
		}
	}
	return postfixtest.Reply{}
}
