package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
)

// binary is the mxpolicyd built once for the tests that run it.
var binary string

func TestMain(m *testing.M) {
	// The tests load the config they name, with its database key: the
	// environment's $MXPOLICYD_DATABASE must not choose another database,
	// here or in a daemon they start.
	os.Unsetenv(config.EnvDatabase)
	var err error
	if binary, err = daemontest.Build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// startDaemon runs the built binary's serve with args on a free loopback
// port and an SQLite file of its own (a --database in args wins).
func startDaemon(t *testing.T, args ...string) *daemontest.Daemon {
	t.Helper()
	return daemontest.Start(t, binary, daemontest.Options{Args: args})
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
	c := newClient(t, d.Addr)
	for i, l := range strings.Split(string(data), "\n") {
		switch {
		case l == ">":
			c.send("\n")
		case strings.HasPrefix(l, "> "):
			c.send(strings.TrimPrefix(l, "> ") + "\n")
		case l == "< closed":
			c.expectClosed(i + 1)
			c = newClient(t, d.Addr)
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

// expectClosed waits for the daemon to close the connection without a
// reply. A close ends io.ReadAll with no error, or with a reset when our
// unread request was still in the daemon's socket; a deadline means the
// daemon kept the connection open.
func (c *client) expectClosed(line int) {
	c.flush()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c.br)
	if len(b) > 0 {
		c.t.Errorf("line %d: got %q, want close without reply", line, b)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Errorf("line %d: connection not closed: %v", line, err)
	}
}

// TestObserveLogsWouldBe checks that observe mode logs what enforcing
// would have answered.
func TestObserveLogsWouldBe(t *testing.T) {
	d := startDaemon(t, "--config", "testdata/observe.yaml")
	c := newClient(t, d.Addr)
	c.send("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@example.org\nrecipient=b@example.net\n\n")
	if got := c.reply(0); got != "action=DUNNO" {
		t.Fatalf("observe mode answered %q", got)
	}
	d.WaitLog(t, `"would":"DEFER_IF_PERMIT 4.2.0 Greylisted`)
}

// TestReloadStartsEnforcing is the rollout the README describes: observe
// first, then "observe: false" and SIGHUP, on the same connection.
func TestReloadStartsEnforcing(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("observe: true\nchecks: {spf: {enabled: false}}\n"), 0o644)
	d := startDaemon(t, "--config", cfg)
	c := newClient(t, d.Addr)
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@example.org\nrecipient=b@example.net\n\n"
	c.send(req)
	if got := c.reply(0); got != "action=DUNNO" {
		t.Fatalf("observe mode answered %q", got)
	}
	os.WriteFile(cfg, []byte("observe: false\nchecks: {spf: {enabled: false}}\n"), 0o644)
	d.Cmd.Process.Signal(hangup)
	d.WaitLog(t, "config reloaded")
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
	c := newClient(t, d.Addr)
	os.WriteFile(cfg, []byte("no_such_key: 1\n"), 0o644)
	d.Cmd.Process.Signal(hangup)
	d.WaitLog(t, "reload failed")
	c.send("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b\n\n")
	if got := c.reply(0); !strings.HasPrefix(got, "action=") {
		t.Fatalf("connection dropped by reload: %q", got)
	}
	os.WriteFile(cfg, []byte("log: {level: debug}\n"), 0o644)
	d.Cmd.Process.Signal(hangup)
	d.WaitLog(t, "config reloaded")
}
