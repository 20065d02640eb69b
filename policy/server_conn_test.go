package policy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// An idle connection reads the first byte of a request on its own; the
// request is parsed with that byte in front of the rest.
func TestServerFirstByteAlone(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{}})
	c, br := dial(t, addr)
	for _, rcpt := range []string{"a@x", "b@x"} {
		req := block(rcpt, "", "m1")
		io.WriteString(c, req[:1])
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, req[1:])
		if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt "+rcpt {
			t.Fatalf("reply %q", got)
		}
	}
}

// Readers are pooled across servers; each request still gets a buffer
// sized by its own server's max_line_bytes, so an over-long line closes
// the connection on the server with the small limit only.
func TestServerPooledReaderKeepsLineLimit(t *testing.T) {
	small := startServer(t, &Server{Decider: &echoDecider{},
		ServerConfig: ServerConfig{Limits: Limits{MaxLine: 100, MaxAttrs: 16, MaxRequest: 4096}}})
	large := startServer(t, &Server{Decider: &echoDecider{}})
	long := block("a@x", "s"+strings.Repeat("x", 200)+"@x", "m1")
	for range 3 {
		c, br := dial(t, large)
		io.WriteString(c, long)
		if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt a@x" {
			t.Fatalf("default limits: reply %q", got)
		}
		c, br = dial(t, small)
		io.WriteString(c, long)
		expectClosed(t, br)
	}
}

// Between requests a connection is parked in the server's poller and
// holds no goroutine, whether it has yet to send a request or has been
// answered; it is served again when its next request arrives.
func TestServerIdleConnsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is epoll(7), Linux only")
	}
	obs := &countObserver{}
	addr := startServer(t, &Server{Decider: &echoDecider{}, Conns: obs})
	before := runtime.NumGoroutine()
	const n = 200
	var used []net.Conn
	var usedR []*bufio.Reader
	for i := range n {
		c, br := dial(t, addr)
		if i%2 == 0 {
			askOK(t, c, br, "a@x")
			used, usedR = append(used, c), append(usedR, br)
		}
	}
	for wait := time.Now().Add(5 * time.Second); obs.open() < n || runtime.NumGoroutine() > before+n/10; {
		if time.Now().After(wait) {
			t.Fatalf("%d connections open, %d goroutines more than before them: want %d open, fewer than %d",
				obs.open(), runtime.NumGoroutine()-before, n, n/10)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, c := range used {
		askOK(t, c, usedR[i], "b@x")
	}
}

// plainConn hides the socket (syscall.Conn) from the server, which then
// cannot park the connection and waits for its requests in a goroutine.
type plainConn struct{ net.Conn }

type plainListener struct{ net.Listener }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return plainConn{c}, nil
}

// A connection the server cannot park keeps the same behaviour: message
// state across requests, the first request's deadline, the idle timeout
// and eviction of the longest idle.
func TestServerUnparkedConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, obs := &echoDecider{}, &countObserver{}
	addr := serveOn(t, &Server{Decider: d, Conns: obs, ServerConfig: ServerConfig{
		ReadTimeout: 200 * time.Millisecond, IdleTimeout: 500 * time.Millisecond, MaxConnections: 2}},
		plainListener{ln})
	used, usedR := dial(t, addr)
	askOK(t, used, usedR, "a@x")
	_, silentR := dial(t, addr)
	expectClosed(t, silentR)     // after ReadTimeout, counted from its accept
	askOK(t, used, usedR, "b@x") // idle longer than ReadTimeout, not IdleTimeout
	d.mu.Lock()
	if d.msgs[0] != d.msgs[1] {
		t.Error("per-message state lost between requests")
	}
	d.mu.Unlock()
	start := time.Now()
	expectClosed(t, usedR)
	if idle := time.Since(start); idle < 400*time.Millisecond {
		t.Errorf("closed after %v idle, want IdleTimeout", idle)
	}
	for obs.open() > 0 { // the server forgets a connection just after closing it
		time.Sleep(time.Millisecond)
	}

	first, firstR := dial(t, addr)
	askOK(t, first, firstR, "c@x")
	second, secondR := dial(t, addr)
	askOK(t, second, secondR, "d@x")
	third, thirdR := dial(t, addr)
	askOK(t, third, thirdR, "e@x")
	expectClosed(t, firstR) // the longest idle made room
	if evicted, _ := obs.counts(); evicted != 1 {
		t.Errorf("evicted %d, want 1", evicted)
	}
}

// readCounter is a socket (it keeps *net.TCPConn's SyscallConn, so the
// server can park it) that counts the server's reads.
type readCounter struct {
	*net.TCPConn
	reads *atomic.Int64
}

func (c readCounter) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.TCPConn.Read(p)
}

type countingListener struct {
	net.Listener
	reads *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return readCounter{c.(*net.TCPConn), l.reads}, nil
}

// A busy connection, asked again as soon as it is answered, reads each
// request whole with one read: no byte alone in front of it.
func TestServerBusyConnReadsOncePerRequest(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("without the poller, a connection waits with a one-byte read")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64
	addr := serveOn(t, &Server{Decider: &echoDecider{}}, countingListener{ln, &reads})
	c, br := dial(t, addr)
	askOK(t, c, br, "a@x") // the first request: accepted, waited for alone
	const n = 50
	before := reads.Load()
	for i := range n {
		askOK(t, c, br, fmt.Sprintf("r%d@x", i))
	}
	// A read that finds nothing yet (EAGAIN) is retried inside the
	// runtime, not through Read: each request is one Read, or now and
	// then two when it reaches the socket in two parts; a byte read alone
	// would make it two each. The read that gets the first of the n may
	// have begun, and been counted, before before was taken.
	if got := reads.Load() - before; got < n-1 || got > n+n/5 {
		t.Errorf("%d reads for %d requests, want about one each", got, n)
	}
}

// BenchmarkServerPersistentConn is the server's own cost per request:
// one persistent connection asking as soon as it is answered, as a busy
// smtpd does, and a decider that answers at once.
func BenchmarkServerPersistentConn(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Decider: &echoDecider{}, Logger: slog.New(slog.DiscardHandler)}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte(block("a@x", "s@x", "m1"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := br.ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
		if _, err := br.ReadByte(); err != nil {
			b.Fatal(err)
		}
	}
}
