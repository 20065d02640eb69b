package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is the mxpolicyd built once for the transcript tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mxpolicyd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mxpolicyd")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building mxpolicyd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonProc is a running "mxpolicyd serve".
type daemonProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
}

// startDaemon runs the built binary on 127.0.0.1:0 and finds the port in
// its "listening" log line.
func startDaemon(t *testing.T, args ...string) *daemonProc {
	t.Helper()
	args = append([]string{"serve", "--listen", "127.0.0.1:0",
		"--database", filepath.Join(t.TempDir(), "mx.db")}, args...)
	cmd := exec.Command(binary, args...)
	buf := &syncBuffer{}
	cmd.Stderr = buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, stderr: buf}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("daemon log:\n%s", buf.String())
		}
	})
	re := regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			p.addr = m[1]
			return p
		}
		if cmd.ProcessState != nil {
			break
		}
	}
	t.Fatalf("daemon did not start; log:\n%s", buf.String())
	return nil
}

// stop sends SIGTERM and insists on a clean exit 0.
func (p *daemonProc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("daemon exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Error("daemon did not stop on SIGINT")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// A transcript is a file of steps. "> line" lines are sent (a ">" alone
// sends the empty line that ends a request); "< action=..." expects that
// reply exactly; "<~ regexp" expects a reply matching it; "< closed"
// expects the server to close the connection without a reply, after which
// the next step reconnects. "#" lines are comments; a "# args: ..." line
// passes flags to serve.
func TestTranscripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/transcripts/*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts found")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runTranscript(t, f)
		})
	}
}

func runTranscript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, l := range strings.Split(string(data), "\n") {
		if a, ok := strings.CutPrefix(l, "# args:"); ok {
			for _, f := range strings.Fields(a) {
				extra = append(extra, strings.ReplaceAll(f, "$TESTDATA", mustAbs(t, "testdata")))
			}
		}
	}
	d := startDaemon(t, extra...)
	c := newClient(t, d.addr)
	for i, l := range strings.Split(string(data), "\n") {
		switch {
		case l == ">":
			c.send("\n")
		case strings.HasPrefix(l, "> "):
			c.send(strings.TrimPrefix(l, "> ") + "\n")
		case l == "< closed":
			c.expectClosed(i + 1)
			c = newClient(t, d.addr)
		case strings.HasPrefix(l, "<~ "):
			got := c.reply(i + 1)
			if !regexp.MustCompile(strings.TrimPrefix(l, "<~ ")).MatchString(got) {
				t.Errorf("line %d: reply %q does not match %q", i+1, got, l[3:])
			}
		case strings.HasPrefix(l, "< "):
			if got := c.reply(i + 1); got != l[2:] {
				t.Errorf("line %d: reply %q, want %q", i+1, got, l[2:])
			}
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	out  bytes.Buffer
}

func newClient(t *testing.T, addr string) *client {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// send buffers a line; the buffer is written when a reply is awaited, so
// several requests in a row go out in one write, as in one packet.
func (c *client) send(s string) { c.out.WriteString(s) }

func (c *client) flush() {
	c.conn.SetDeadline(time.Now().Add(15 * time.Second))
	if c.out.Len() > 0 {
		c.conn.Write(c.out.Bytes())
		c.out.Reset()
	}
}

func (c *client) reply(line int) string {
	c.flush()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("line %d: no reply: %v", line, err)
	}
	if e, err := c.br.ReadString('\n'); err != nil || e != "\n" {
		c.t.Fatalf("line %d: reply not ended by an empty line (%q, %v)", line, e, err)
	}
	return strings.TrimSuffix(l, "\n")
}

func (c *client) expectClosed(line int) {
	c.flush()
	b, err := io.ReadAll(c.br)
	if len(b) > 0 {
		c.t.Errorf("line %d: got %q, want close without reply", line, b)
	}
	_ = err // EOF or reset both mean closed
}

// TestObserveLogsWouldBe checks that observe mode logs what enforcing
// would have answered.
func TestObserveLogsWouldBe(t *testing.T) {
	d := startDaemon(t, "--config", "testdata/observe.yaml")
	c := newClient(t, d.addr)
	c.send("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@example.org\nrecipient=b@example.net\n\n")
	if got := c.reply(0); got != "action=DUNNO" {
		t.Fatalf("observe mode answered %q", got)
	}
	waitFor(t, d.stderr, `would="DEFER_IF_PERMIT 4.2.0 Greylisted`)
}

// TestReloadStartsEnforcing is the rollout the README describes: observe
// first, then "observe: false" and SIGHUP, on the same connection.
func TestReloadStartsEnforcing(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("observe: true\nchecks: {spf: {enabled: false}}\n"), 0o644)
	d := startDaemon(t, "--config", cfg)
	c := newClient(t, d.addr)
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@example.org\nrecipient=b@example.net\n\n"
	c.send(req)
	if got := c.reply(0); got != "action=DUNNO" {
		t.Fatalf("observe mode answered %q", got)
	}
	os.WriteFile(cfg, []byte("observe: false\nchecks: {spf: {enabled: false}}\n"), 0o644)
	d.cmd.Process.Signal(hangup)
	waitFor(t, d.stderr, "config reloaded")
	c.send(req)
	if got := c.reply(0); !strings.HasPrefix(got, "action=DEFER_IF_PERMIT 4.2.0 Greylisted") {
		t.Fatalf("after reload with observe off, got %q", got)
	}
}

// TestServeReloadBadFile checks that SIGHUP with a bad file keeps serving
// with the old config, and a good file is taken.
func TestServeReloadBadFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("log: {level: info}\n"), 0o644)
	d := startDaemon(t, "--config", cfg)
	c := newClient(t, d.addr)
	os.WriteFile(cfg, []byte("no_such_key: 1\n"), 0o644)
	d.cmd.Process.Signal(hangup)
	waitFor(t, d.stderr, "reload failed")
	c.send("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b\n\n")
	if got := c.reply(0); !strings.HasPrefix(got, "action=") {
		t.Fatalf("connection dropped by reload: %q", got)
	}
	os.WriteFile(cfg, []byte("log: {level: debug}\n"), 0o644)
	d.cmd.Process.Signal(hangup)
	waitFor(t, d.stderr, "config reloaded")
}

func waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !strings.Contains(b.String(), s) {
		select {
		case <-ctx.Done():
			t.Fatalf("log never said %q:\n%s", s, b.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
