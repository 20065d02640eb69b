package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	addr := startServer(t, &Server{Decider: &echoDecider{}, ReadTimeout: 200 * time.Millisecond})
	c, br := dial(t, addr)
	io.WriteString(c, "request=smtpd_access_policy\nprotocol_state=RC") // and nothing more
	start := time.Now()
	expectClosed(t, br)
	if time.Since(start) > 5*time.Second {
		t.Error("stalled client held the connection past the read timeout")
	}
}

func TestServerIdleTimeout(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{}, IdleTimeout: 100 * time.Millisecond})
	_, br := dial(t, addr)
	expectClosed(t, br)
}

func TestServerAllowedClients(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{},
		Allowed: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	_, br := dial(t, addr)
	expectClosed(t, br) // 127.0.0.1 is not in the list
}

func TestServerMaxConns(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{}, MaxConns: 1})
	c1, br1 := dial(t, addr)
	io.WriteString(c1, block("a@x", "", "1"))
	readReply(t, br1) // c1 is established and counted
	_, br2 := dial(t, addr)
	expectClosed(t, br2)
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

func TestServerShutdownDeadline(t *testing.T) {
	d := &echoDecider{block: make(chan struct{}), started: make(chan struct{}, 1)}
	defer close(d.block)
	s := &Server{Decider: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(ln)
	c, _ := dial(t, ln.Addr().String())
	io.WriteString(c, block("b@x", "", "1"))
	<-d.started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	go func() { time.Sleep(200 * time.Millisecond); d.block <- struct{}{} }()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
}

func TestUnixListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.sock")
	ln, err := Listen("unix:"+path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Decider: &echoDecider{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, block("u@x", "", "1"))
	if got := readReply(t, bufio.NewReader(c)); got != "action=DEFER_IF_PERMIT rcpt u@x" {
		t.Fatalf("reply %q", got)
	}
	// A stale socket from a crash is replaced; a regular file is not.
	s.Shutdown(context.Background())
	if _, err := Listen("unix:"+path, 0o660); err != nil {
		t.Errorf("stale socket not replaced: %v", err)
	}
	if _, err := Listen("unix:"+filepath.Join(t.TempDir()), 0o660); err == nil {
		t.Error("listening over a non-socket file succeeded")
	}
}
