package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// verdictConfig greylists every recipient on its own triplet
// (awl_pair and the client auto-whitelist off, so known and new
// recipients mix in one message) and holds a message's deferral for DATA
// (greylist.stage: data).
const verdictConfig = `
greylist:
  delay: 2s
  stage: data
  awl_pair: false
  awl_client_passes: 0
`

// One verdict per message and headers on every message, through a real
// Postfix wired as contrib/postfix/main.cf.snippet says (the policy
// service in smtpd_recipient_restrictions and smtpd_data_restrictions):
//
//   - a message whose recipients mix a new triplet and known ones is
//     deferred as one, whatever their order: all 450 at RCPT when the new
//     one comes first, all 250 at RCPT and 450 at DATA when it comes after
//     a known one; its retry after the delay is delivered to all of them;
//   - a role recipient (postmaster@) in such a message stays exempt: 250
//     at RCPT, delivered at once;
//   - a one-recipient and a three-recipient message that pass after a
//     delay each arrive with exactly one X-Greylist and one Received-SPF.
func TestOneVerdictPerMessageThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	srv := dnstest.New(t, `sender.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	d := startDaemon(t, daemontest.Options{Config: dnsConfig(srv) + verdictConfig})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr,
		ExtraMainCF: map[string]string{"smtpd_data_restrictions": contribDataRestrictions(t, d.Addr)}})
	mail := func(marker string, rcpts ...string) postfixtest.Mail {
		for i, r := range rcpts {
			rcpts[i] = r + "@" + postfixtest.Domain
		}
		return postfixtest.Mail{From: "alice@sender.test", To: rcpts, ClientAddr: "192.0.2.30",
			Helo: "mail.sender.test", Body: marker + "\n"}
	}
	known := mail("known", "k1", "k2")
	solo := mail("solo", "solo")
	triple := mail("triple", "t1", "t2", "t3")

	// First contact: every recipient of every message is new. The retries
	// wait for the delay from the last first contact: on a slow machine
	// each swaks run takes a second or more.
	for _, m := range []postfixtest.Mail{known, solo, triple} {
		wantRcpt(t, pf.Swaks(t, m), every(450, m)...)
	}
	time.Sleep(greylistDelay + 250*time.Millisecond)
	for _, m := range []postfixtest.Mail{known, solo, triple} {
		res := pf.Swaks(t, m)
		wantRcpt(t, res, every(250, m)...)
		if res.DataEnd().Code != 250 {
			t.Fatalf("%s after the delay: end of DATA %v, want 250\n%s", m.Body, res.DataEnd(), res)
		}
	}
	// The one-recipient message gets its second header at DATA.
	assertHeaders(t, pf, "solo", 1, "X-Greylist: delayed ", "Received-SPF: pass ")
	assertHeaders(t, pf, "triple", 3, "X-Greylist: delayed ", "Received-SPF: pass ")

	// k1 and k2 are known now; n1, n2 and n3 are new.
	knownFirst := mail("known-first", "k1", "k2", "n1")
	newFirst := mail("new-first", "n2", "k1", "k2")
	exempt := mail("exempt", "n3", "postmaster", "k1")
	res := pf.Swaks(t, knownFirst)
	wantRcpt(t, res, 250, 250, 250)
	if r := res.Data(); r.Code != 450 || !strings.Contains(r.Text, "Greylisted") {
		t.Fatalf("known recipients first: DATA %v, want 450 ... Greylisted for the whole message\n%s", r, res)
	}
	wantRcpt(t, pf.Swaks(t, newFirst), 450, 450, 450)
	res = pf.Swaks(t, exempt)
	wantRcpt(t, res, 450, 250, 450)
	if res.DataEnd().Code != 250 {
		t.Fatalf("exempt recipient: end of DATA %v, want 250 (postmaster@ delivered now)\n%s", res.DataEnd(), res)
	}
	assertHeaders(t, pf, "exempt", 1, "Received-SPF: pass ")
	// BDAT (RFC 3030) is asked as DATA at its first chunk (BDAT_README), so
	// a chunked message is deferred whole as well.
	if rcpt, data := bdatMessage(t, pf.Addr, "192.0.2.30", "k1", "n4"); !slices.Equal(rcpt, []int{250, 250}) || data != 450 {
		t.Fatalf("known recipient first, sent with BDAT: RCPT %v, BDAT %d; want 250s and 450", rcpt, data)
	}

	time.Sleep(greylistDelay + 250*time.Millisecond) // from the last first contact, n4's
	for _, m := range []postfixtest.Mail{knownFirst, newFirst} {
		res := pf.Swaks(t, m)
		wantRcpt(t, res, 250, 250, 250)
		if res.DataEnd().Code != 250 {
			t.Fatalf("%s retry: end of DATA %v, want 250\n%s", m.Body, res.DataEnd(), res)
		}
	}
	assertHeaders(t, pf, "known-first", 3, "X-Greylist: delayed ", "Received-SPF: pass ")
	assertHeaders(t, pf, "new-first", 3, "X-Greylist: delayed ", "Received-SPF: pass ")
}

// every is code for each recipient of m.
func every(code int, m postfixtest.Mail) []int {
	codes := make([]int, len(m.To))
	for i := range codes {
		codes[i] = code
	}
	return codes
}

// wantRcpt checks the reply to each RCPT of res.
func wantRcpt(t *testing.T, res *postfixtest.Result, codes ...int) {
	t.Helper()
	for i := range codes {
		if got := res.RcptCode(i); got != codes[i] {
			t.Fatalf("RCPT %d: got %v, want %d\n%s", i, res.Rcpt(i), codes[i], res)
		}
	}
}

// assertHeaders waits for the n delivered copies whose body is marker and
// checks that each carries each header (by prefix) exactly once.
func assertHeaders(t *testing.T, pf *postfixtest.Postfix, marker string, n int, prefixes ...string) {
	t.Helper()
	var copies []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		copies = copies[:0]
		for _, msg := range pf.Delivered() {
			head, body, _ := strings.Cut(strings.ReplaceAll(msg, "\r\n", "\n"), "\n\n")
			if strings.TrimSpace(body) == marker {
				copies = append(copies, head)
			}
		}
		if len(copies) >= n || time.Now().After(deadline) {
			break
		}
	}
	if len(copies) != n {
		t.Fatalf("%d copies of %q delivered, want %d\n%s", len(copies), marker, n, pf.Log())
	}
	for _, head := range copies {
		for _, p := range prefixes {
			if c := strings.Count("\n"+head, "\n"+p); c != 1 {
				t.Errorf("%q: delivered copy has %d %q headers, want 1:\n%s", marker, c, p, head)
			}
		}
	}
}

// contribDataRestrictions reads smtpd_data_restrictions from the main.cf
// lines contrib gives admins, pointed at addr, so the test runs Postfix
// as they will.
func contribDataRestrictions(t *testing.T, addr string) string {
	t.Helper()
	f, err := os.Open("../contrib/postfix/main.cf.snippet")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var value []string
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "smtpd_data_restrictions"):
			_, v, _ := strings.Cut(line, "=")
			value, in = append(value, strings.TrimSpace(v)), true
		case in && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")):
			value = append(value, strings.TrimSpace(line))
		default:
			in = false
		}
	}
	v := strings.TrimSpace(strings.Join(value, " "))
	if !strings.Contains(v, "inet:127.0.0.1:10040") {
		t.Fatalf("contrib/postfix/main.cf.snippet: smtpd_data_restrictions = %q, want the policy service", v)
	}
	return strings.ReplaceAll(v, "inet:127.0.0.1:10040", "inet:"+addr)
}

// bdatMessage sends one message with BDAT from client (presented with
// XCLIENT, as swaks does) to the local parts rcpts, and returns the reply
// code to each RCPT and to the one BDAT LAST chunk. swaks cannot send BDAT.
func bdatMessage(t *testing.T, addr, client string, rcpts ...string) (rcpt []int, bdat int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := textproto.NewConn(conn)
	cmd := func(want int, format string, args ...any) int {
		t.Helper()
		if format != "" {
			if err := c.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		code, msg, err := c.ReadResponse(0)
		if want != 0 && code != want {
			t.Fatalf("%q: %d %s (%v), want %d", fmt.Sprintf(format, args...), code, msg, err, want)
		}
		return code
	}
	cmd(220, "")
	cmd(250, "EHLO mail.sender.test")
	cmd(220, "XCLIENT ADDR=%s HELO=mail.sender.test", client)
	cmd(250, "EHLO mail.sender.test")
	cmd(250, "MAIL FROM:<alice@sender.test>")
	for _, r := range rcpts {
		rcpt = append(rcpt, cmd(0, "RCPT TO:<%s@%s>", r, postfixtest.Domain))
	}
	body := "Subject: bdat\r\n\r\nbdat\r\n"
	bdat = cmd(0, "BDAT %d LAST\r\n%s", len(body), body[:len(body)-2])
	return rcpt, bdat
}
