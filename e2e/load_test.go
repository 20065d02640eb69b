package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// load is a steady stream of policy requests over a few persistent
// connections, as Postfix's smtpd processes keep them open
// (SMTPD_POLICY_README, "Policy client/server configuration"). It records
// every answer, so a fault test can assert on what a sending MTA would
// have seen and when.
type load struct {
	start time.Time
	opt   loadOptions
	stop  chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	results []result
}

type loadOptions struct {
	Conns int           // persistent connections; default 8
	Pause time.Duration // between two requests of one connection; default 50ms
	Max   int           // requests in all, at most; default 20000
	// Triplet gives request n of connection conn its client address,
	// sender and recipient; requests are numbered from 0 per connection.
	Triplet func(conn, n int) triplet
}

type triplet struct{ Client, Sender, Rcpt string }

// result is one request as the client saw it.
type result struct {
	At      time.Duration // when it was sent, since the load started
	Latency time.Duration
	Action  string // the reply's action, "" when Err is set
	Err     error  // a protocol error: closed, malformed or no reply in time
}

// Done is when the answer came, since the load started.
func (r result) Done() time.Duration { return r.At + r.Latency }

// Verb is the action's first word: DUNNO, DEFER_IF_PERMIT, PREPEND...
func (r result) Verb() string { v, _, _ := strings.Cut(r.Action, " "); return v }

// replyDeadline is how long the client waits for one reply: Postfix's
// policy client gives up after the timeout=10s our main.cf snippet sets
// (check_policy_service's default is 100s).
const replyDeadline = 10 * time.Second

// loadLimit bounds a load that a failing test forgot to stop.
const loadLimit = 3 * time.Minute

// startLoad connects opt.Conns clients to addr and keeps them asking until
// stop, opt.Max requests, or loadLimit.
func startLoad(t *testing.T, addr string, opt loadOptions) *load {
	t.Helper()
	if opt.Conns == 0 {
		opt.Conns = 8
	}
	if opt.Pause == 0 {
		opt.Pause = 50 * time.Millisecond
	}
	if opt.Max == 0 {
		opt.Max = 20000
	}
	l := &load{start: time.Now(), opt: opt, stop: make(chan struct{})}
	for c := range opt.Conns {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("load: connect %s: %v", addr, err)
		}
		l.wg.Add(1)
		go l.run(addr, conn, c)
	}
	t.Cleanup(func() { l.Stop() })
	time.AfterFunc(loadLimit, func() { l.Stop() })
	return l
}

// Since is the time since the load started, on the clock of result.At.
func (l *load) Since() time.Duration { return time.Since(l.start) }

// run is one client. A protocol error is recorded and the client
// reconnects, as Postfix would for its next request.
func (l *load) run(addr string, conn net.Conn, id int) {
	defer l.wg.Done()
	defer func() { conn.Close() }()
	rd := bufio.NewReader(conn)
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		case <-time.After(l.opt.Pause):
		}
		r := l.ask(conn, rd, id, n)
		if !l.record(r) {
			return
		}
		if r.Err != nil {
			conn.Close()
			var err error
			if conn, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
				l.record(result{At: l.Since(), Err: fmt.Errorf("reconnect: %w", err)})
				return
			}
			rd = bufio.NewReader(conn)
		}
	}
}

// ask sends request n of connection id and reads its one reply.
func (l *load) ask(conn net.Conn, rd *bufio.Reader, id, n int) result {
	at := l.Since()
	r := exchange(conn, rd, l.opt.Triplet(id, n).request(fmt.Sprintf("load.%d.%d", id, n)))
	r.At = at
	return r
}

// request is the RCPT-stage policy request of tr, as smtpd sends it.
func (tr triplet) request(instance string) string {
	return fmt.Sprintf("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"+
		"client_address=%s\nclient_name=unknown\nhelo_name=mail.load.test\nsender=%s\nrecipient=%s\n"+
		"instance=%s\n\n", tr.Client, tr.Sender, tr.Rcpt, instance)
}

// exchange sends one request and reads its reply within replyDeadline.
func exchange(conn net.Conn, rd *bufio.Reader, req string) result {
	var r result
	sent := time.Now()
	_ = conn.SetDeadline(sent.Add(replyDeadline))
	if _, err := io.WriteString(conn, req); err != nil {
		r.Err = fmt.Errorf("write: %w", err)
	} else {
		r.Action, r.Err = readReply(rd)
	}
	r.Latency = time.Since(sent)
	return r
}

// ask sends one request on a connection of its own, as a probe beside a
// load.
func ask(t *testing.T, addr string, tr triplet) result {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	defer conn.Close()
	return exchange(conn, bufio.NewReader(conn), tr.request("probe."+tr.Rcpt))
}

// errClosed marks a connection the daemon closed instead of answering.
var errClosed = errors.New("connection closed")

// readReply reads "action=...\n\n": exactly one attribute, the action
// (SMTPD_POLICY_README, "Protocol description").
func readReply(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && line == "" {
			return "", errClosed
		}
		return "", fmt.Errorf("read: %w", err)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok || action == "" {
		return "", fmt.Errorf("malformed reply %q", line)
	}
	if end, err := rd.ReadString('\n'); err != nil || end != "\n" {
		return "", fmt.Errorf("reply %q not ended by an empty line: %q, %v", line, end, err)
	}
	return action, nil
}

// record keeps r and reports whether the load may go on.
func (l *load) record(r result) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.results = append(l.results, r)
	return len(l.results) < l.opt.Max
}

// Stop ends the load, waiting for replies in flight; it may be called
// more than once.
func (l *load) Stop() loadSummary {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
	return l.Summary()
}

// Results is a copy of what was recorded so far.
func (l *load) Results() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]result(nil), l.results...)
}

// Summary sums up the results so far.
func (l *load) Summary() loadSummary { return summarize(l.Results()) }

type loadSummary struct {
	Results    []result
	Count      int
	Errors     []error // every protocol error, errClosed included
	Closed     int
	MaxLatency time.Duration
	ByVerb     map[string]int
}

func summarize(rs []result) loadSummary {
	s := loadSummary{Results: rs, Count: len(rs), ByVerb: map[string]int{}}
	for _, r := range rs {
		s.MaxLatency = max(s.MaxLatency, r.Latency)
		switch {
		case errors.Is(r.Err, errClosed):
			s.Closed++
			s.Errors = append(s.Errors, r.Err)
		case r.Err != nil:
			s.Errors = append(s.Errors, r.Err)
		default:
			s.ByVerb[r.Verb()]++
		}
	}
	return s
}

// Between returns the requests sent and answered within [from, to).
func (s loadSummary) Between(from, to time.Duration) loadSummary {
	var rs []result
	for _, r := range s.Results {
		if r.At >= from && r.Done() < to {
			rs = append(rs, r)
		}
	}
	return summarize(rs)
}

// First returns the first answer (results are kept in the order they
// were answered) with verb to a request sent at or after from.
func (s loadSummary) First(verb string, from time.Duration) (result, bool) {
	for _, r := range s.Results {
		if r.At >= from && r.Err == nil && r.Verb() == verb {
			return r, true
		}
	}
	return result{}, false
}

// WaitFor waits up to limit for an answer verb sent at or after from and
// returns it.
func (l *load) WaitFor(t *testing.T, verb string, from, limit time.Duration) result {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if r, ok := l.Summary().First(verb, from); ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("load: no %s answer within %v: %v", verb, limit, l.Summary().Between(from, l.Since()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s loadSummary) String() string {
	return fmt.Sprintf("%d requests, %d protocol errors (%d closed), max latency %v, by action %v",
		s.Count, len(s.Errors), s.Closed, s.MaxLatency.Round(time.Millisecond), s.ByVerb)
}

// freshTriplets gives every request a triplet never seen before: its own
// client network (greylist.ipv4_prefix 24), sender and recipient, so
// every answer is greylisting's verdict on a new triplet.
func freshTriplets(tag string) func(conn, n int) triplet {
	return func(conn, n int) triplet {
		return triplet{
			Client: fmt.Sprintf("10.%d.%d.1", conn, n%250),
			Sender: fmt.Sprintf("s%d.%d@%s.load.test", conn, n, tag),
			Rcpt:   fmt.Sprintf("r%d.%d@example.test", conn, n),
		}
	}
}
