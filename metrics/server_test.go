package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestScrapeAfterDecisions(t *testing.T) {
	m := New()
	ts := httptest.NewServer(NewServer(DefaultConfig(), m, nil, nil).Handler())
	defer ts.Close()
	for _, d := range sampleDecisions(t)[:2] {
		m.Record(d)
	}
	want := decisionsHead + `
mxpolicyd_decisions_total{action="reject",check="dnsbl",mode="enforce",reason="listed zen.spamhaus.org"} 1
mxpolicyd_decisions_total{action="reject",check="spf",mode="enforce",reason="fail"} 1
`
	if err := testutil.ScrapeAndCompare(ts.URL+"/metrics", strings.NewReader(want), "mxpolicyd_decisions_total"); err != nil {
		t.Fatal(err)
	}
	// The runtime collectors are part of the exposition.
	if _, body := get(t, ts.URL+"/metrics"); !strings.Contains(body, "go_goroutines") ||
		!strings.Contains(body, "process_start_time_seconds") {
		t.Error("exposition lacks the Go or process collector")
	}
	if code, _ := get(t, ts.URL+"/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

func TestCustomPath(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = "/prom"
	ts := httptest.NewServer(NewServer(cfg, New(), nil, nil).Handler())
	defer ts.Close()
	if code, body := get(t, ts.URL+"/prom"); code != 200 || !strings.Contains(body, "mxpolicyd_connections_open") {
		t.Errorf("/prom: %d %q", code, body)
	}
	if code, _ := get(t, ts.URL+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics with path /prom: %d, want 404", code)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	pingErr := errors.New("dial tcp 10.0.0.5:5432: connect: connection refused")
	var failing atomic.Bool
	ping := func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("ping called without a deadline")
		}
		if failing.Load() {
			return pingErr
		}
		return nil
	}
	m := New()
	ts := httptest.NewServer(NewServer(DefaultConfig(), m, ping, nil).Handler())
	defer ts.Close()

	if code, body := get(t, ts.URL+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("readyz with store up: %d %q", code, body)
	}
	failing.Store(true)
	code, body := get(t, ts.URL+"/readyz")
	if code != http.StatusServiceUnavailable || body != "not ready: store unreachable\n" {
		t.Errorf("readyz with store down: %d %q", code, body)
	}
	if strings.Contains(body, "10.0.0.5") {
		t.Error("readyz leaks the store error to HTTP")
	}
	if code, body := get(t, ts.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz with store down: %d %q (the process is alive)", code, body)
	}
	if got := testutil.ToFloat64(m.storeErrors.WithLabelValues("ping")); got != 1 {
		t.Errorf("store_errors_total{op=ping} = %v, want 1", got)
	}
	pingErr = fmt.Errorf("connecting to 10.0.0.5: %w", reasonErr("migrations pending"))
	if code, body := get(t, ts.URL+"/readyz"); code != http.StatusServiceUnavailable ||
		body != "not ready: migrations pending\n" {
		t.Errorf("readyz with a reason: %d %q", code, body)
	}
}

// reasonErr is an error that says why in words fit for /readyz, as
// internal/db's readiness errors do.
type reasonErr string

func (e reasonErr) Error() string  { return "db: " + string(e) }
func (e reasonErr) Reason() string { return string(e) }

func TestServeShutsDownOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := NewServer(DefaultConfig(), New(), nil, nil)
	go func() { done <- s.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	if code, _ := get(t, url+"/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestListenAndServeReportsBusyAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := NewServer(Config{Listen: busy.Addr().String(), Path: "/metrics"}, New(), nil, nil)
	err = s.ListenAndServe(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Fatalf("err = %v, want a metrics: error", err)
	}
}

// prompt bounds how long a test waits for what the short limits make
// happen within a fraction of it.
const prompt = 3 * time.Second

// shortLimits are the listener's limits shrunk so that tests need not
// wait 10 s to see them act.
func shortLimits() limits {
	return limits{read: 200 * time.Millisecond, write: 200 * time.Millisecond, idle: 200 * time.Millisecond, maxConns: 8}
}

// serve runs s on 127.0.0.1:0 until the test ends and returns its address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A client that stalls, declares a body, posts, or sends huge headers gets
// its answer (if any) and its connection closed within the short limits.
func TestStuckRequestsEndPromptly(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PProf = true // /debug/pprof/symbol reads a POST body
	s := NewServer(cfg, New(), nil, nil)
	s.lim = shortLimits()
	addr := serve(t, s)
	for _, tc := range []struct{ name, req, status string }{
		{"headers never end", "GET /metrics HTTP/1.1\r\nHost: x\r\n", ""},
		{"declared body never sent", "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n", "HTTP/1.1 413 "},
		{"chunked body never sent", "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 413 "},
		{"POST with a body", "POST /debug/pprof/symbol HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n0x1234", "HTTP/1.1 405 "},
		{"headers over 64 KiB", "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 80<<10) + "\r\n\r\n", "HTTP/1.1 431 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(prompt))
			got, err := io.ReadAll(c) // a reset (unread request bytes) is a close too
			if timedOut(err) {
				t.Fatalf("connection still open after %v (read %.40q)", prompt, got)
			}
			if !strings.HasPrefix(string(got), tc.status) {
				t.Errorf("reply %.60q, want %q", got, tc.status)
			}
		})
	}
}

// A client that never reads its reply fails the handler's writes once the
// write timeout passes, which frees the handler and the connection.
func TestUnreadReplyIsCut(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Report = true
	s := NewServer(cfg, New(), nil, nil)
	s.lim = shortLimits()
	werr := make(chan error, 1)
	s.ServeReport(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 64<<10)
		for n := 0; n < 1<<30; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}))
	c := dial(t, serve(t, s))
	if _, err := io.WriteString(c, "GET /report HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-werr:
		if err == nil {
			t.Fatal("1 GiB written to a client that reads nothing")
		}
	case <-time.After(prompt):
		t.Fatalf("reply to a client that reads nothing still blocked after %v", prompt)
	}
}

// Connections past maxConns wait in the accept queue, unserved, and are
// served as soon as one of the open ones closes.
func TestConnectionsOverCapWait(t *testing.T) {
	s := NewServer(DefaultConfig(), New(), nil, nil)
	s.lim.maxConns = 2
	addr := serve(t, s)
	held := []net.Conn{dial(t, addr), dial(t, addr)}
	for _, c := range held { // served, then idle and kept alive
		if code := healthz(t, c, bufio.NewReader(c)); code != http.StatusOK {
			t.Fatalf("healthz: %d", code)
		}
	}
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !timedOut(err) {
		t.Fatalf("third connection served with a cap of 2 (read: %v)", err)
	}
	held[0].Close()
	c.SetReadDeadline(time.Now().Add(prompt))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("waiting connection after one closed: %v %v", resp, err)
	}
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// healthz asks /healthz on c, keeping it alive, and returns the status.
func healthz(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(prompt))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
