package e2e

// Faults the built daemon must survive, and what it guarantees under each.
// "In time" means a reply within request_timeout (6 s by default; the
// tests allow replyGrace more for scheduling on a loaded machine), still
// under the timeout=10s of contrib/postfix/main.cf.snippet, so Postfix
// never falls back to its default_action because mxpolicyd was slow.
//
//   - Stalled log sink: stderr is a pipe nobody reads. Every request is
//     still answered in time; records that cannot be written are dropped
//     and counted in mxpolicyd_log_records_dropped_total, every decision
//     is either written or counted, and once the sink drains the log says
//     how many were dropped.
//   - Log sink gone: stderr is a pipe whose reader has exited (a
//     `| logger` that died). Postfix still gets the daemon's replies, and
//     the lines it could not write are counted.
//   - Connection table full: max_connections connections sit idle after
//     a reply, as Postfix's smtpd processes keep theirs
//     (smtpd_policy_service_max_idle). A new client is still answered:
//     the connection idle the longest is closed to admit it, and Postfix
//     reconnects when it finds its idle connection closed (attr_clnt.c).
//     A connection that never sends a request is closed after
//     read_timeout, not kept for idle_timeout.
//   - Our own resolver slow (every answer after 1.9 s, under dns.timeout),
//     silent (UDP and TCP accept and never answer) or absent (a closed
//     port): the same request gets the same action every time, in time,
//     and never a deferral. SPF does not turn our resolver's failure into
//     temperror (DEFER_IF_PERMIT 4.7.24) and no "Received-SPF: temperror"
//     is prepended: the sender did nothing wrong, so the check fails open.
//   - The sender's domain failing at a healthy resolver (SERVFAIL) is the
//     sender's temporary error (RFC 7208 §8.6), and still gets
//     spf.actions.temperror: the control for the case above.
//   - A check abandoned at its timeout leaves no trace: its late result
//     does not reach the later recipients of the same message, which all
//     get the first one's action.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/asynclog"
	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// requestBudget is the default request_timeout, which these configs keep.
const requestBudget = 6 * time.Second

// replyGrace is what a reply may take beyond the budget to be written and
// read back under -race on a shared test machine.
const replyGrace = time.Second

// requireBinary skips when the developer opted out of end-to-end tests
// (TestMain then built no binary). These tests need neither root nor
// Postfix: they speak the policy protocol themselves.
func requireBinary(t *testing.T) {
	t.Helper()
	if postfixtest.OptedOut(t) {
		t.Skipf("end-to-end test skipped: %s=0", postfixtest.OptOutEnv)
	}
}

// faultRequest is an RCPT-stage request in the order and shape Postfix
// sends it (SMTPD_POLICY_README, "Protocol description").
func faultRequest(client, sender, rcpt, instance string) string {
	return "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=" + client + "\nclient_name=unknown\nreverse_client_name=unknown\n" +
		"helo_name=mail.sender.test\nsender=" + sender + "\nrecipient=" + rcpt +
		"\nrecipient_count=0\nqueue_id=\ninstance=" + instance + "\nsize=0\nsasl_username=\n\n"
}

// policyConn is one client connection, used like a Postfix smtpd process
// uses its policy connection: one request, one reply, repeat.
type policyConn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialPolicy(t *testing.T, addr string) *policyConn {
	t.Helper()
	pc, err := newPolicyConn(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.nc.Close() })
	return pc
}

// newPolicyConn dials addr, for a goroutine that cannot fail the test.
func newPolicyConn(addr string) (*policyConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &policyConn{nc: nc, br: bufio.NewReader(nc)}, nil
}

// ask sends req and returns the action and how long the reply took. It
// waits well past the budget, so a late reply is measured, not lost.
func (c *policyConn) ask(req string) (string, time.Duration, error) {
	start := time.Now()
	c.nc.SetDeadline(start.Add(requestBudget + 10*time.Second))
	if _, err := io.WriteString(c.nc, req); err != nil {
		return "", 0, err
	}
	action := ""
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return "", time.Since(start), fmt.Errorf("reading reply: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "action="); ok {
			action = v
		}
	}
	if action == "" {
		return "", time.Since(start), errors.New("reply without action=")
	}
	return action, time.Since(start), nil
}

// askOnce asks on a fresh connection.
func askOnce(t *testing.T, addr, req string) (string, time.Duration) {
	t.Helper()
	action, took, err := dialPolicy(t, addr).ask(req)
	if err != nil {
		t.Fatalf("request: %v after %v", err, took)
	}
	return action, took
}

// metricsConfig serves /metrics on a free loopback port; it returns the
// config lines and the URL.
func metricsConfig(t *testing.T) (string, string) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(postfixtest.FreePort(t)))
	return "metrics:\n  listen: " + addr + "\n", "http://" + addr + "/metrics"
}

// metricValue scrapes url and returns the value of the sample named name
// (without labels), failing the test if it is absent.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	for _, line := range scrape(t, url) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return sampleValue(t, line, v)
		}
	}
	t.Fatalf("metric %s not exposed at %s", name, url)
	return 0
}

// metricSum scrapes url and returns the sum of the samples of name whose
// labels contain label (`check="spf"`); 0 when there are none.
func metricSum(t *testing.T, url, name, label string) float64 {
	t.Helper()
	var sum float64
	for _, line := range scrape(t, url) {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		if labels, v, ok := strings.Cut(rest, "} "); ok && strings.Contains(labels, label) {
			sum += sampleValue(t, line, v)
		}
	}
	return sum
}

// scrape returns the lines of url's exposition.
func scrape(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return strings.Split(string(body), "\n")
}

func sampleValue(t *testing.T, line, v string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		t.Fatalf("sample %q: %v", line, err)
	}
	return f
}

// stalledLogRequests is how many requests meet the stalled log sink,
// stalledLogPerConn on each of stalledLogConns connections: more decision
// records than the log queue holds, plus what the pipe's buffer (64 KiB
// on Linux, a few hundred records; pipe(7)) takes before it stalls, so
// records must be dropped.
const (
	stalledLogConns    = 20
	stalledLogPerConn  = (asynclog.DefaultQueueSize + 1000) / stalledLogConns
	stalledLogRequests = stalledLogConns * stalledLogPerConn
)

// The daemon's stderr is a pipe nobody reads: once the pipe's buffer is
// full, a daemon that logged synchronously would block every reply on its
// next decision line.
func TestFaultStalledLogSink(t *testing.T) {
	requireBinary(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	metrics, url := metricsConfig(t)
	d := startDaemon(t, daemontest.Options{Stderr: w, Config: metrics + `
log:
  level: info
checks:
  spf:
    enabled: false
  greylist:
    enabled: false
decision_log:
  enabled: false
`})
	w.Close() // the daemon holds its own copy
	var out logtest.Buffer
	drained := make(chan struct{})
	var once sync.Once
	drain := func() {
		once.Do(func() { go func() { io.Copy(&out, r); r.Close(); close(drained) }() })
	}
	t.Cleanup(drain) // runs before startDaemon's stop, so the daemon can exit

	maxTook, errs := stalledLoad(d.Addr)
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d requests over %d connections, slowest reply %v", stalledLogRequests, stalledLogConns, maxTook)
	if maxTook > requestBudget+replyGrace {
		t.Errorf("slowest reply took %v, want at most %v", maxTook, requestBudget+replyGrace)
	}
	dropped := metricValue(t, url, "mxpolicyd_log_records_dropped_total")
	t.Logf("log records dropped while the sink stalled: %v", dropped)
	if dropped <= 0 {
		t.Errorf("mxpolicyd_log_records_dropped_total = %v with the log sink stalled, want > 0", dropped)
	}

	drain()
	d.Stop(t)
	<-drained
	written, reported := countDecisions(out.Bytes())
	t.Logf("decision records written %d; records dropped %v, reported in the log %d", written, dropped, reported)
	if float64(written)+dropped < stalledLogRequests {
		t.Errorf("%d decisions written and %v records dropped, want at least %d together: records lost uncounted",
			written, dropped, stalledLogRequests)
	}
	if float64(reported) < dropped {
		t.Errorf("the log reports %d records dropped once the sink drained, want at least the %v counted", reported, dropped)
	}
}

// The daemon's stderr is a pipe whose reader has gone, as when a
// `| logger` behind it exits: every write to it fails with EPIPE. Left to
// the Go runtime's default, such a write to fd 2 kills the process with
// SIGPIPE (os/signal, "SIGPIPE"), which systemd's Restart=on-failure takes
// for a clean exit and does not restart (systemd.service(5),
// SuccessExitStatus=): Postfix would get its default_action from then on.
func TestFaultClosedLogSink(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	metrics, url := metricsConfig(t)
	d := startDaemon(t, daemontest.Options{Stderr: w, Config: metrics + greylistConfig,
		Files: map[string]string{"clients": ""}})
	w.Close() // the daemon holds its own copy
	r.Close() // and now nobody reads it: the start-up lines were its last
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr})
	const mails = 3
	for i := range mails {
		// A new triplet each: greylisting's 450 comes only from the
		// daemon, where a dead one would leave Postfix's DUNNO, a 250.
		res := rcptAt(t, pf, "192.0.2.30", "mail.sender.test", "alice@sender.test", fmt.Sprintf("rcpt%d@example.test", i))
		if res.RcptCode(0) != 450 || !strings.Contains(res.Rcpt(0).Text, "Greylisted") {
			t.Fatalf("mail %d after the log's reader went away: RCPT got %v, want 450 ... Greylisted\n%s", i, res.Rcpt(0), res)
		}
	}
	select {
	case <-d.Exited():
		t.Fatalf("mxpolicyd exited: %v", d.Cmd.ProcessState)
	default:
	}
	dropped := metricValue(t, url, "mxpolicyd_log_records_dropped_total")
	t.Logf("%d mails greylisted by the daemon after its log's reader went away; log records dropped: %v", mails, dropped)
	if dropped < mails {
		t.Errorf("mxpolicyd_log_records_dropped_total = %v after %d decisions nobody could read, want at least %d", dropped, mails, mails)
	}
}

// stalledLoad sends stalledLogRequests requests over stalledLogConns
// persistent connections and returns the slowest reply and any failures.
func stalledLoad(addr string) (time.Duration, []error) {
	return eachConn(stalledLogConns, func(c int) (time.Duration, error) { return stalledConn(addr, c) })
}

// eachConn runs conn(0) to conn(n-1) at once, each a client on its own
// connection, and returns the slowest reply they report and their
// failures.
func eachConn(n int, conn func(c int) (time.Duration, error)) (time.Duration, []error) {
	var (
		mu      sync.Mutex
		maxTook time.Duration
		errs    []error
		wg      sync.WaitGroup
	)
	for c := range n {
		wg.Go(func() {
			took, err := conn(c)
			mu.Lock()
			defer mu.Unlock()
			maxTook = max(maxTook, took)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return maxTook, errs
}

func stalledConn(addr string, c int) (time.Duration, error) {
	pc, err := newPolicyConn(addr)
	if err != nil {
		return 0, err
	}
	defer pc.nc.Close()
	var maxTook time.Duration
	for i := range stalledLogPerConn {
		req := faultRequest("192.0.2.1", "alice@sender.test", fmt.Sprintf("rcpt%d-%d@example.test", c, i),
			fmt.Sprintf("stall.%d.%d", c, i))
		action, took, err := pc.ask(req)
		maxTook = max(maxTook, took)
		if err != nil {
			return maxTook, fmt.Errorf("connection %d, request %d: %v after %v", c, i, err, took)
		}
		if action != "DUNNO" {
			return maxTook, fmt.Errorf("connection %d, request %d: action %q, want DUNNO", c, i, action)
		}
	}
	return maxTook, nil
}

// countDecisions counts the decision records in a JSON log, and sums the
// counts of its "log records dropped" records.
func countDecisions(log []byte) (decisions, dropped int) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		switch rec["msg"] {
		case "decision":
			decisions++
		case "log records dropped":
			n, _ := rec["count"].(float64)
			dropped += int(n)
		}
	}
	return decisions, dropped
}

// tableSize is max_connections for the full-table test: small, so the
// test holds every slot.
const tableSize = 50

// Every slot of the connection table holds an idle connection, as when
// more smtpd processes keep a policy connection than max_connections
// allows. A Postfix that connects now must still be answered.
func TestFaultConnectionTableFull(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	metrics, url := metricsConfig(t)
	d := startDaemon(t, daemontest.Options{Config: metrics + fmt.Sprintf(`
max_connections: %d
read_timeout: 1s
checks:
  spf:
    enabled: false
  greylist:
    enabled: false
`, tableSize)})

	held := make([]*policyConn, tableSize)
	for i := range held {
		held[i] = dialPolicy(t, d.Addr)
		if _, _, err := held[i].ask(faultRequest("192.0.2.2", "alice@sender.test",
			fmt.Sprintf("held%d@example.test", i), fmt.Sprintf("held.%d", i))); err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
	}
	if n := metricValue(t, url, "mxpolicyd_connections_open"); n != tableSize {
		t.Fatalf("%v connections open after %d were set up, want %d: inconclusive", n, tableSize, tableSize)
	}

	for i := range 2 {
		action, took := askOnce(t, d.Addr, faultRequest("192.0.2.3", "alice@sender.test",
			fmt.Sprintf("new%d@example.test", i), fmt.Sprintf("new.%d", i)))
		t.Logf("new client %d with the table full: %s after %v", i, action, took)
		if action != "DUNNO" {
			t.Errorf("new client %d: action %q, want DUNNO", i, action)
		}
		// The connection idle the longest made room: it reads EOF.
		assertClosed(t, held[i], fmt.Sprintf("held connection %d (idle the longest)", i), 5*time.Second)
	}

	// Postfix connects only to send a request at once (attr_clnt.c), so
	// a connection that stays silent is closed after read_timeout (1s),
	// not kept for idle_timeout (330s).
	silent := dialPolicy(t, d.Addr)
	start := time.Now()
	assertClosed(t, silent, "silent connection", 10*time.Second)
	t.Logf("silent connection closed by the daemon after %v (read_timeout 1s)", time.Since(start).Round(time.Millisecond))
}

// assertClosed waits up to within for the daemon to close c.
func assertClosed(t *testing.T, c *policyConn, what string, within time.Duration) {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(within))
	_, err := c.br.ReadByte()
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("%s: still open after %v, want closed by the daemon", what, within)
	default:
		t.Errorf("%s: read %v, want EOF", what, err)
	}
}

// faultZone is the healthy DNS data behind every resolver fault: one DNS
// list that does not list the client, and a sender domain whose policy
// ends in ~all, so the client gets softfail, which answers DUNNO by
// default (and a pass would cost a second lookup, spf.passesAnyone).
var faultZone = []string{
	"zen.test. 300 IN SOA ns.zen.test. hostmaster.zen.test. 1 3600 600 86400 60",
	"2.0.0.127.zen.test. 300 IN A 127.0.0.2", // RFC 5782 §5 test entry: passes the self-check
	"sender.test. 300 IN SOA ns.sender.test. hostmaster.sender.test. 1 3600 600 86400 60",
	`sender.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ~all"`,
}

// faultConfig turns on SPF (a default) and one DNS list, and greylisting
// off, so that a deferral can only come from SPF's temperror.
func faultConfig(dnsAddr string) string {
	return fmt.Sprintf(`dns:
  server: %s
dnsbl:
  lists: ["zen.test=127.0.0.[2..11]"]
checks:
  greylist:
    enabled: false
`, dnsAddr)
}

const (
	faultClient = "198.51.100.7"
	faultSender = "alice@sender.test"
)

// The resolver mxpolicyd is configured with (dns.server) is slow, silent
// or gone. That is our failure, not the sender's: no mail may be
// deferred for it, and the answer must not depend on timing.
func TestFaultOwnResolver(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	cases := map[string]func(t *testing.T) string{
		"slow": func(t *testing.T) string {
			return slowDNS(t, dnstest.New(t, faultZone...).Addr(), 1900*time.Millisecond)
		},
		"silent": silentDNS,
		"absent": closedDNSPort,
	}
	for name, server := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			metrics, url := metricsConfig(t)
			d := startDaemon(t, daemontest.Options{Config: metrics + faultConfig(server(t))})
			actions := askRepeatedly(t, d.Addr, name, 10)
			if name != "slow" {
				// No answer at all: SPF and the list fail, each per its
				// on_error (DUNNO), and each failure is counted.
				if actions[0] != "DUNNO" {
					t.Errorf("action %q, want DUNNO: SPF and the list fail open", actions[0])
				}
				for _, check := range []string{"spf", "dnsbl"} {
					if n := metricSum(t, url, "mxpolicyd_check_errors_total", `check="`+check+`"`); n < 10 {
						t.Errorf("mxpolicyd_check_errors_total{check=%q} = %v, want one per request (10)", check, n)
					}
				}
			}
			for i, a := range actions {
				if deferral(a) {
					t.Errorf("request %d: action %q: deferred because our own resolver failed", i, a)
				}
				if strings.Contains(a, "Received-SPF: temperror") {
					t.Errorf("request %d: action %q: temperror header for our own resolver's failure", i, a)
				}
				if a != actions[0] {
					t.Errorf("request %d: action %q, request 0 got %q: want the same every time", i, a, actions[0])
				}
			}
		})
	}
}

// The control: a healthy resolver reporting SERVFAIL for the sender's
// domain is the sender's temporary error, and SPF still answers
// spf.actions.temperror for it.
func TestFaultSenderDomainServfail(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	srv := dnstest.New(t, faultZone...)
	srv.SetRcode("sender.test", dns.RcodeServerFailure)
	d := startDaemon(t, daemontest.Options{Config: faultConfig(srv.Addr())})
	for i, a := range askRepeatedly(t, d.Addr, "servfail", 3) {
		if !strings.HasPrefix(a, "DEFER_IF_PERMIT 4.7.24 ") {
			t.Errorf("request %d: action %q, want DEFER_IF_PERMIT 4.7.24 (SPF temperror of the sender's domain)", i, a)
		}
	}
}

// askRepeatedly sends the same request n times, each a new message (a
// fresh instance) on a fresh connection, and checks every reply is in
// time.
func askRepeatedly(t *testing.T, addr, name string, n int) []string {
	t.Helper()
	var actions []string
	var slowest time.Duration
	for i := range n {
		a, took := askOnce(t, addr, faultRequest(faultClient, faultSender, "bob@example.test",
			fmt.Sprintf("%s.%d", name, i)))
		if took > requestBudget+replyGrace {
			t.Errorf("request %d: reply after %v, want at most %v", i, took, requestBudget+replyGrace)
		}
		slowest = max(slowest, took)
		actions = append(actions, a)
	}
	t.Logf("%d requests: action %q, slowest reply %v", n, actions[0], slowest)
	return actions
}

// deferral reports whether a makes Postfix answer with a 4XX.
func deferral(a string) bool {
	verb, _, _ := strings.Cut(a, " ")
	return verb == "DEFER" || verb == "DEFER_IF_PERMIT" || verb == "DEFER_IF_REJECT" ||
		len(verb) == 3 && verb[0] == '4'
}

// slowDNS forwards every query, UDP or TCP, to upstream and answers after
// delay. It returns its address.
func slowDNS(t *testing.T, upstream string, delay time.Duration) string {
	t.Helper()
	pc, ln := dnstest.ListenPort(t)
	done := make(chan struct{})
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		select {
		case <-time.After(delay):
		case <-done:
			return
		}
		resp, err := dns.Exchange(req, upstream)
		if err != nil {
			resp = new(dns.Msg)
			resp.SetRcode(req, dns.RcodeServerFailure)
		}
		w.WriteMsg(resp)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	t.Cleanup(func() { close(done) }) // runs first: releases sleeping handlers
	return pc.LocalAddr().String()
}

// silentDNS reads every UDP query and drops it, and accepts every TCP
// connection and never answers: a resolver that is up but hung.
func silentDNS(t *testing.T) string {
	t.Helper()
	pc, ln := dnstest.ListenPort(t)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return pc.LocalAddr().String()
}

// closedDNSPort returns a loopback address nothing listens on: queries
// meet ICMP port unreachable (UDP) or a reset (TCP), a resolver that is
// down.
func closedDNSPort(t *testing.T) string {
	t.Helper()
	pc, ln := dnstest.ListenPort(t)
	addr := pc.LocalAddr().String()
	pc.Close()
	ln.Close()
	return addr
}

// spfCheckTimeout is checks.spf.timeout in the abandoned-check test:
// under dns.timeout (2s), so the check is abandoned while its lookup is
// still waiting, and the lookup ends on its own later.
const spfCheckTimeout = time.Second

// A check abandoned at its timeout must leave no trace. The sender
// domain's answer comes after every timeout, so SPF's evaluation for the
// first recipient is abandoned and fails open; the evaluation itself ends
// later, with temperror. That late result must not reach the message's
// other recipients, as a deferral or as a Received-SPF: temperror header.
func TestFaultAbandonedCheck(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	srv := dnstest.New(t, faultZone...)
	srv.SetDelay("sender.test", 3*time.Second)
	d := startDaemon(t, daemontest.Options{Config: faultConfig(srv.Addr()) +
		fmt.Sprintf("  spf:\n    timeout: %v\n", spfCheckTimeout)})

	c := dialPolicy(t, d.Addr)
	var actions []string
	for i, rcpt := range []string{"bob@example.test", "carol@example.test", "dave@example.test"} {
		a, took, err := c.ask(faultRequest(faultClient, faultSender, rcpt, "abandoned.0"))
		if err != nil {
			t.Fatalf("recipient %d: %v after %v", i, err, took)
		}
		t.Logf("recipient %d: %q after %v", i, a, took)
		if took > requestBudget+replyGrace {
			t.Errorf("recipient %d: reply after %v, want at most %v", i, took, requestBudget+replyGrace)
		}
		actions = append(actions, a)
		if i == 0 {
			// As an SMTP client paces its RCPTs: by now the abandoned
			// evaluation's one query has timed out (dns.timeout 2s).
			time.Sleep(2*time.Second + 500*time.Millisecond)
		}
	}
	for i, a := range actions {
		if strings.Contains(a, "Received-SPF: temperror") || deferral(a) {
			t.Errorf("recipient %d: action %q carries the abandoned check's temperror", i, a)
		}
		if a != actions[0] {
			t.Errorf("recipient %d: action %q, recipient 0 got %q: want the same for the whole message", i, a, actions[0])
		}
	}
}
