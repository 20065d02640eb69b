package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
)

// echoDecider answers DEFER_IF_PERMIT with the recipient, so a test can
// tell which request a reply belongs to, and remembers the messages.
type echoDecider struct {
	mu      sync.Mutex
	msgs    []*Message
	senders []string
	block   chan struct{} // if set, Decide for b@x waits on it
	started chan struct{}
}

func (d *echoDecider) Decide(ctx context.Context, r *Request, m *Message) Action {
	if d.block != nil && r.Recipient == "b@x" {
		d.started <- struct{}{}
		<-d.block
	}
	d.mu.Lock()
	d.msgs = append(d.msgs, m)
	d.senders = append(d.senders, r.Sender)
	d.mu.Unlock()
	return Action{Verb: DeferIfPermit, Text: "rcpt " + r.Recipient}
}

func startServer(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, s, ln)
}

// serveOn serves ln until the test ends, and returns its address.
func serveOn(t *testing.T, s *Server, ln net.Listener) string {
	t.Helper()
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func block(rcpt, sender, instance string) string {
	return "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=" + sender +
		"\nrecipient=" + rcpt + "\ninstance=" + instance + "\n\n"
}

func readReply(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	if empty, err := br.ReadString('\n'); err != nil || empty != "\n" {
		t.Fatalf("reply not ended by an empty line: %q %v", empty, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// expectClosed asserts the server closed the connection without a reply.
func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.ReadString('\n')
		t.Fatalf("got a reply %q, want a close without reply", string(b)+rest)
	}
	if !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("read error %v, want EOF", err)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

func TestServerPersistentConnection(t *testing.T) {
	d := &echoDecider{}
	addr := startServer(t, &Server{Decider: d})
	c, br := dial(t, addr)
	// Three requests on one connection, the last two in a single write
	// (one packet), with a sender that contains "=" (SRS).
	io.WriteString(c, block("a@x", "", "m1"))
	if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt a@x" {
		t.Fatalf("first reply %q", got)
	}
	io.WriteString(c, block("b@x", "SRS0=h=t=d.example=u@f.example", "m1")+block("c@x", "", "m2"))
	if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt b@x" {
		t.Fatalf("second reply %q", got)
	}
	if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt c@x" {
		t.Fatalf("third reply %q", got)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.senders[1] != "SRS0=h=t=d.example=u@f.example" {
		t.Errorf("sender %q lost its = signs", d.senders[1])
	}
	// Same instance shares the message state; a new instance starts fresh.
	if d.msgs[0] != d.msgs[1] || d.msgs[1] == d.msgs[2] {
		t.Error("per-message state not keyed by instance")
	}
}

func TestServerBadInputClosesWithoutReply(t *testing.T) {
	tests := map[string]string{
		"garbage":         "\x00\x01\x02\xff\xfe\n\n",
		"no request attr": "protocol_state=RCPT\nrecipient=a@b\n\n",
		"oversized line":  "request=smtpd_access_policy\nsender=" + strings.Repeat("x", 100000) + "\n\n",
		"bad address":     "request=smtpd_access_policy\nclient_address=not-an-ip\n\n",
		"too many attrs":  "request=smtpd_access_policy\n" + strings.Repeat("a=b\n", 1000) + "\n",
	}
	addr := startServer(t, &Server{Decider: &echoDecider{}})
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			c, br := dial(t, addr)
			io.WriteString(c, in)
			expectClosed(t, br)
		})
	}
	// The server is still alive and answering.
	c, br := dial(t, addr)
	io.WriteString(c, block("ok@x", "", "1"))
	if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt ok@x" {
		t.Fatalf("server not answering after bad input: %q", got)
	}
}

func TestServerStalledClient(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{}, ServerConfig: ServerConfig{ReadTimeout: 200 * time.Millisecond}})
	c, br := dial(t, addr)
	io.WriteString(c, "request=smtpd_access_policy\nprotocol_state=RC") // and nothing more
	start := time.Now()
	expectClosed(t, br)
	if time.Since(start) > 5*time.Second {
		t.Error("stalled client held the connection past the read timeout")
	}
}

// A request that stalls behind one that came whole in the same read still
// gets ReadTimeout, not the idle timeout: only a request the buffer holds
// whole is read without a deadline of its own.
func TestServerStalledAfterWholeRequest(t *testing.T) {
	for name, lead := range map[string]string{"after a request": "", "after stray empty lines": "\n\n"} {
		t.Run(name, func(t *testing.T) {
			addr := startServer(t, &Server{Decider: &echoDecider{},
				ServerConfig: ServerConfig{ReadTimeout: 200 * time.Millisecond, IdleTimeout: time.Minute}})
			c, br := dial(t, addr)
			io.WriteString(c, block("a@x", "", "1")+lead+"request=smtpd_access_policy\nprotocol_state=RC")
			if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt a@x" {
				t.Fatalf("first reply %q", got)
			}
			start := time.Now()
			expectClosed(t, br)
			if time.Since(start) > 5*time.Second {
				t.Error("a stalled request held the connection past the read timeout")
			}
		})
	}
}

func TestHoldsRequest(t *testing.T) {
	for in, want := range map[string]bool{
		"":                              false,
		"request=smtpd_access_policy\n": false,
		"a=b\n\n":                       true,
		"a=b\n\nc=d":                    false, // the second request is read with a deadline
		"a=b\n\nc=d\n\n":                true,
		"\n\n\na=b\n":                   false,
		"\n\na=b\n\n":                   true,
		"a=b\r\n\r\n":                   false, // hand-written clients: read with a deadline
		"\r\n\n":                        false, // stray empty lines only: the request is still to come
		"\r\n\r\na=b\n\n":               true,
	} {
		br := bufio.NewReader(strings.NewReader(in))
		br.Peek(1)
		if got := holdsRequest(br); got != want {
			t.Errorf("holdsRequest(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestServerIdleTimeout(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{}, ServerConfig: ServerConfig{IdleTimeout: 100 * time.Millisecond}})
	c, br := dial(t, addr)
	io.WriteString(c, block("a@x", "", "1"))
	readReply(t, br)
	expectClosed(t, br)
}

// Postfix writes its request as soon as it connects, so a connection that
// sends nothing gets ReadTimeout, while one between requests gets
// IdleTimeout.
func TestServerFirstRequestDeadline(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{},
		ServerConfig: ServerConfig{ReadTimeout: 100 * time.Millisecond, IdleTimeout: time.Minute}})
	used, usedR := dial(t, addr)
	io.WriteString(used, block("a@x", "", "1"))
	readReply(t, usedR) // used is idle from here on
	_, silentR := dial(t, addr)
	expectClosed(t, silentR) // after ReadTimeout, counted from its accept
	// used has now idled longer than ReadTimeout and still answers.
	io.WriteString(used, block("b@x", "", "1"))
	if got := readReply(t, usedR); got != "action=DEFER_IF_PERMIT rcpt b@x" {
		t.Fatalf("idle connection after ReadTimeout: %q", got)
	}
}

func TestServerAllowedClients(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{},
		ServerConfig: ServerConfig{AllowedClients: Prefixes{netip.MustParsePrefix("192.0.2.0/24")}}})
	_, br := dial(t, addr)
	expectClosed(t, br) // 127.0.0.1 is not in the list
}

func TestServerShutdownFinishesInFlight(t *testing.T) {
	d := &echoDecider{block: make(chan struct{}), started: make(chan struct{}, 1)}
	s := &Server{Decider: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	busy, busyR := dial(t, ln.Addr().String())
	idle, idleR := dial(t, ln.Addr().String())
	io.WriteString(idle, block("i@x", "", "1"))
	readReply(t, idleR) // idle is now between requests
	io.WriteString(busy, block("b@x", "", "1"))
	<-d.started // the busy request is inside Decide

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	expectClosed(t, idleR) // idle connections close at once
	close(d.block)         // let the in-flight request finish
	if got := readReply(t, busyR); got != "action=DEFER_IF_PERMIT rcpt b@x" {
		t.Fatalf("in-flight reply %q", got)
	}
	expectClosed(t, busyR)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

// A decision that ignores its cancelled context (stuck in a check that
// runs foreign code) does not hold Shutdown past its deadline and the
// grace after it: Shutdown closes the connection and reports the deadline
// while the decision is still running.
func TestServerShutdownDeadline(t *testing.T) {
	d := &echoDecider{block: make(chan struct{}), started: make(chan struct{}, 1)}
	defer close(d.block) // the stuck decision ends only with the test
	s := &Server{Decider: d, Logger: slog.New(slog.DiscardHandler), grace: time.Millisecond}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	c, br := dial(t, ln.Addr().String())
	io.WriteString(c, block("b@x", "", "1"))
	<-d.started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want deadline exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown waited for a decision that ignores its context")
	}
	expectClosed(t, br)
}

// countObserver counts what a ConnObserver is told.
type countObserver struct {
	mu                      sync.Mutex
	opened, closed, evicted int
	refused                 map[string]int
}

func (o *countObserver) ConnOpened()  { o.mu.Lock(); o.opened++; o.mu.Unlock() }
func (o *countObserver) ConnClosed()  { o.mu.Lock(); o.closed++; o.mu.Unlock() }
func (o *countObserver) ConnEvicted() { o.mu.Lock(); o.evicted++; o.mu.Unlock() }

func (o *countObserver) ConnRefused(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refused == nil {
		o.refused = map[string]int{}
	}
	o.refused[reason]++
}

// open is how many connections are open.
func (o *countObserver) open() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opened - o.closed
}

func (o *countObserver) counts() (evicted int, refused map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.evicted, maps.Clone(o.refused)
}

func askOK(t *testing.T, c net.Conn, br *bufio.Reader, rcpt string) {
	t.Helper()
	io.WriteString(c, block(rcpt, "", "1"))
	if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt "+rcpt {
		t.Fatalf("reply %q, want one for %s", got, rcpt)
	}
}

// Idle sockets held open by anyone must not lock Postfix out: at the cap,
// the connection idle the longest makes room for the new one.
func TestServerEvictsLongestIdle(t *testing.T) {
	obs := &countObserver{}
	addr := startServer(t, &Server{Decider: &echoDecider{}, ServerConfig: ServerConfig{MaxConnections: 3}, Conns: obs})
	var held []net.Conn
	var heldR []*bufio.Reader
	for range 3 { // accepted in order, so the first is idle the longest
		c, br := dial(t, addr)
		held, heldR = append(held, c), append(heldR, br)
	}
	c, br := dial(t, addr)
	askOK(t, c, br, "new@x")
	expectClosed(t, heldR[0])
	askOK(t, held[1], heldR[1], "second@x")
	askOK(t, held[2], heldR[2], "third@x")
	if evicted, refused := obs.counts(); evicted != 1 || len(refused) != 0 {
		t.Errorf("evicted %d refused %v, want 1 and none", evicted, refused)
	}
}

// A connection with a request in flight is never evicted; when every
// connection is busy the new one is refused.
func TestServerNeverEvictsBusy(t *testing.T) {
	d := &echoDecider{block: make(chan struct{}), started: make(chan struct{}, 1)}
	obs := &countObserver{}
	addr := startServer(t, &Server{Decider: d, ServerConfig: ServerConfig{MaxConnections: 2}, Conns: obs})
	busy1, busy1R := dial(t, addr)
	io.WriteString(busy1, block("b@x", "", "1"))
	<-d.started
	_, idleR := dial(t, addr) // sends nothing: idle since accepted
	busy2, busy2R := dial(t, addr)
	expectClosed(t, idleR) // the idle one made room, not the busy one
	io.WriteString(busy2, block("b@x", "", "2"))
	<-d.started
	_, refusedR := dial(t, addr)
	expectClosed(t, refusedR)
	close(d.block)
	for _, br := range []*bufio.Reader{busy1R, busy2R} {
		if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt b@x" {
			t.Errorf("busy connection's reply %q", got)
		}
	}
	evicted, refused := obs.counts()
	if evicted != 1 || refused[RefusedMaxConns] != 1 || len(refused) != 1 {
		t.Errorf("evicted %d refused %v, want 1 and max_connections:1", evicted, refused)
	}
}

// A flood of refused connections costs a line per interval, and the next
// line says how many were held back.
func TestServerRefusalWarningsRateLimited(t *testing.T) {
	var logs logtest.Buffer
	clock := clocktest.New(time.Unix(1e9, 0))
	obs := &countObserver{}
	addr := startServer(t, &Server{Decider: &echoDecider{}, Conns: obs,
		ServerConfig: ServerConfig{AllowedClients: Prefixes{netip.MustParsePrefix("192.0.2.0/24")}},
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
		warns:        newWarnLimiter(warnInterval, clock.Now)})
	refused := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		expectClosed(t, bufio.NewReader(c))
	}
	for range 1000 {
		refused()
	}
	clock.Advance(warnInterval)
	refused()
	var warns []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=WARN") {
			warns = append(warns, line)
		}
	}
	if len(warns) != 2 {
		t.Fatalf("%d WARN lines for 1001 refusals, want 2:\n%s", len(warns), strings.Join(warns, ""))
	}
	if !strings.Contains(warns[1], "suppressed=999") {
		t.Errorf("second line lacks suppressed=999: %s", warns[1])
	}
	if _, r := obs.counts(); r[RefusedNotAllowed] != 1001 {
		t.Errorf("refused %v, want not_allowed:1001", r)
	}
}

// ctxDecider waits for its context to end and reports how it ended.
type ctxDecider struct {
	started chan struct{}
	ended   chan error
}

func (d *ctxDecider) Decide(ctx context.Context, _ *Request, _ *Message) Action {
	d.started <- struct{}{}
	<-ctx.Done()
	d.ended <- ctx.Err()
	return DunnoAction
}

// When Shutdown runs out of time it cancels the decisions in flight, which
// then fail open and still reply.
func TestServerShutdownCancelsDecisions(t *testing.T) {
	d := &ctxDecider{started: make(chan struct{}, 1), ended: make(chan error, 1)}
	s := &Server{Decider: d, Logger: slog.New(slog.DiscardHandler), grace: time.Minute}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	c, br := dial(t, ln.Addr().String())
	io.WriteString(c, block("a@x", "", "1"))
	<-d.started
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already out of time
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want canceled", err)
	}
	if err := <-d.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("decision's context ended with %v, want canceled", err)
	}
	if got := readReply(t, br); got != "action=DUNNO" {
		t.Fatalf("cancelled decision's reply %q, want action=DUNNO", got)
	}
	expectClosed(t, br)
}

func TestListenUnixRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.sock")
	ln, err := Listen("unix:"+path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Decider: &echoDecider{}, Logger: slog.New(slog.DiscardHandler)}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v (%v), want 0660", fi.Mode().Perm(), err)
	}
	_, err = Listen("unix:"+path, 0o660)
	if err == nil || !strings.Contains(err.Error(), "another process is listening on "+path) {
		t.Fatalf("second Listen on a live socket: %v, want another process is listening", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("live socket gone after the refused Listen: %v", err)
	}
	defer c.Close()
	askOK(t, c, bufio.NewReader(c), "u@x")
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.sock")
	// What a crash leaves: the socket file, nobody listening on it.
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket file missing: %v", err)
	}
	ln, err := Listen("unix:"+path, 0o660)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix:"+regular, 0o660); err == nil {
		t.Error("listening over a regular file succeeded")
	}
}

// The socket file never has a wider mode than socket_mode, not even
// between bind and Listen's chmod: with a permissive umask, bind alone
// creates it with the configured mode.
func TestBindUnixIsNeverWider(t *testing.T) {
	old := syscall.Umask(0o002)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "policy.sock")
	ln, err := bindUnix(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o600 != 0 {
		t.Errorf("socket file created with mode %04o, wider than 0600", perm)
	}
}

// gateDecider tells when a request is being decided and answers it only
// when let go.
type gateDecider struct {
	started chan struct{}
	release chan struct{}
}

func (d *gateDecider) Decide(context.Context, *Request, *Message) Action {
	d.started <- struct{}{}
	<-d.release
	return DunnoAction
}

// A local process that asks and resets its connection before the reply
// (SO_LINGER 0, a crashed client) makes the reply's write fail, once per
// connection. Those warnings are about bad connections, which are
// "rate-limited to one line per kind per 10 s with a suppressed=N count"
// (docs/RELIABILITY.md, "Bounded everything"); one process must not
// write a line to the log per connection it opens.
func TestServerWriteFailureWarningsRateLimited(t *testing.T) {
	var logs logtest.Buffer
	d := &gateDecider{started: make(chan struct{}), release: make(chan struct{})}
	srv := &Server{Decider: d, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	addr := startServer(t, srv)
	const n = 200
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, block("a@x", "", "1"))
		<-d.started // the request is read and being decided
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // RST
		d.release <- struct{}{}
	}
	// Each reply's write fails and its connection ends.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		srv.mu.Lock()
		open := len(srv.conns)
		srv.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", open)
		}
	}
	var warns []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "writing reply failed") {
			warns = append(warns, line)
		}
	}
	if len(warns) != 1 {
		t.Fatalf("%d warnings for %d connections reset before their reply, want one per 10 s:\n%s",
			len(warns), n, strings.Join(warns[:min(len(warns), 3)], ""))
	}
}
