package postfixtest

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stubPolicy is a minimal policy service: it proves the rig, not
// mxpolicyd. It defers recipients starting with "grey", rejects those
// starting with "reject", and answers DUNNO otherwise, recording each
// request it saw.
type stubPolicy struct {
	ln   net.Listener
	mu   sync.Mutex
	reqs []map[string]string
}

func startStubPolicy(t *testing.T) *stubPolicy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stubPolicy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go s.serve()
	return s
}

func (s *stubPolicy) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *stubPolicy) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	req := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			name, value, _ := strings.Cut(line, "=")
			req[name] = value
			continue
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		if _, err := c.Write([]byte("action=" + stubAction(req["recipient"]) + "\n\n")); err != nil {
			return
		}
		req = map[string]string{}
	}
}

func stubAction(rcpt string) string {
	switch {
	case strings.HasPrefix(rcpt, "grey"):
		return "DEFER_IF_PERMIT 4.2.0 Greylisted by stub"
	case strings.HasPrefix(rcpt, "reject"):
		return "REJECT 5.7.1 Rejected by stub"
	}
	return "DUNNO"
}

func (s *stubPolicy) requests() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]string(nil), s.reqs...)
}

func TestPolicyAnswersAtRcpt(t *testing.T) {
	t.Parallel()
	stub := startStubPolicy(t)
	pf := Start(t, Options{PolicyAddr: stub.ln.Addr().String()})
	res := pf.Swaks(t, Mail{
		From:       "alice@sender.test",
		To:         []string{"grey@" + Domain, "bob@" + Domain, "reject@" + Domain, "carol@elsewhere.test"},
		ClientAddr: "192.0.2.7",
		Helo:       "mail.sender.test",
		QuitAfter:  "RCPT",
	})
	for i, want := range []int{450, 250, 554, 454} {
		if got := res.RcptCode(i); got != want {
			t.Errorf("RCPT %d: got %v, want %d\n%s", i, res.Rcpt(i), want, res)
		}
	}
	if got := res.Rcpt(0).Text; !strings.Contains(got, "Greylisted by stub") {
		t.Errorf("RCPT 0 text %q does not carry the policy's text", got)
	}
	// The relay-denied recipient never reaches the policy service:
	// reject_unauth_destination comes first.
	reqs := stub.requests()
	if len(reqs) != 3 {
		t.Fatalf("policy service saw %d requests, want 3: %v", len(reqs), reqs)
	}
	want := map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT",
		"client_address": "192.0.2.7", "helo_name": "mail.sender.test", "sender": "alice@sender.test",
		"recipient": "grey@" + Domain}
	for k, v := range want {
		if reqs[0][k] != v {
			t.Errorf("policy request %s=%q, want %q", k, reqs[0][k], v)
		}
	}
}

func TestAcceptedMailIsDelivered(t *testing.T) {
	t.Parallel()
	stub := startStubPolicy(t)
	pf := Start(t, Options{PolicyAddr: stub.ln.Addr().String()})
	res := pf.Swaks(t, Mail{From: "alice@sender.test", To: []string{"bob@" + Domain},
		ClientAddr: "192.0.2.8", Body: "hello from the rig test\n"})
	if res.DataEnd().Code != 250 {
		t.Fatalf("end of DATA: got %v, want 250\n%s", res.DataEnd(), res)
	}
	msgs := pf.WaitDelivered(t, 1, 30*time.Second)
	if !strings.Contains(msgs[0], "hello from the rig test") {
		t.Errorf("delivered message lacks the body:\n%s", msgs[0])
	}
}

// With default_action=DUNNO, Postfix carries on as if no policy service
// were configured when it cannot reach one (SMTPD_POLICY_README).
func TestPolicyDownFailsOpen(t *testing.T) {
	t.Parallel()
	pf := Start(t, Options{PolicyAddr: "127.0.0.1:" + strconv.Itoa(FreePort(t))})
	res := pf.Swaks(t, Mail{From: "alice@sender.test", To: []string{"grey@" + Domain},
		ClientAddr: "192.0.2.9", QuitAfter: "RCPT"})
	if res.RcptCode(0) != 250 {
		t.Fatalf("RCPT with the policy service down: got %v, want 250\n%s", res.Rcpt(0), res)
	}
}

// milter_default_action = tempfail: a dead milter defers mail instead of
// passing it unscanned or losing it.
func TestDeadMilterDefers(t *testing.T) {
	t.Parallel()
	pf := Start(t, Options{Milters: "inet:127.0.0.1:" + strconv.Itoa(FreePort(t))})
	res := pf.Swaks(t, Mail{From: "alice@sender.test", To: []string{"bob@" + Domain}, ClientAddr: "192.0.2.10"})
	if got := firstFailure(res); got.Code/100 != 4 {
		t.Fatalf("with the milter down: first failure %v, want 4xx\n%s", got, res)
	}
	if n := len(pf.Delivered()); n != 0 {
		t.Errorf("%d messages delivered, want 0", n)
	}
}

// firstFailure returns the first reply that is neither 2xx nor 3xx.
func firstFailure(res *Result) Reply {
	for _, s := range res.Steps {
		if s.Reply.Code >= 400 {
			return s.Reply
		}
	}
	return Reply{}
}
