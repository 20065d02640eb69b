package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// daemon is one "mxpolicyd serve" process, logging JSON to a buffer.
type daemon struct {
	Addr string
	Dir  string

	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncBuffer
}

// daemonOptions configure one daemon. In Config and Files, "$DIR" stands
// for the daemon's directory; Files are written there before it starts.
type daemonOptions struct {
	Config string
	Files  map[string]string
	// Database is the DSN; empty means an SQLite file in $DIR.
	Database string
	// Listen adds listeners (--listen values, "$DIR" expanded) to the
	// loopback TCP one.
	Listen []string
	// Stderr, when set, receives the daemon's log instead of the buffer:
	// a pipe the test leaves unread stalls the log sink.
	Stderr *os.File
}

// startDaemon runs the built binary with opt.Config (plus --listen on a
// free loopback port and --database), waits until it accepts connections,
// and stops it with SIGTERM when the test ends, expecting a clean exit.
func startDaemon(t *testing.T, opt daemonOptions) *daemon {
	t.Helper()
	dir := postfixtest.TempDir(t, "mxpd")
	t.Cleanup(func() { os.RemoveAll(dir) })
	expand := func(s string) string { return strings.ReplaceAll(s, "$DIR", dir) }
	for name, data := range opt.Files {
		writeFile(t, filepath.Join(dir, name), expand(data))
	}
	cfg := filepath.Join(dir, "mxpolicyd.yaml")
	writeFile(t, cfg, expand(opt.Config))
	database := opt.Database
	if database == "" {
		database = filepath.Join(dir, "mxpolicyd.db")
	}
	d := &daemon{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(postfixtest.FreePort(t))), Dir: dir, log: &syncBuffer{}}
	args := []string{"--config", cfg, "serve", "--listen", d.Addr, "--database", database, "--log-format", "json"}
	for _, l := range opt.Listen {
		args = append(args, "--listen", expand(l))
	}
	d.cmd = exec.Command(binary, args...)
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if opt.Stderr != nil {
		d.cmd.Stderr = opt.Stderr
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start mxpolicyd: %v", err)
	}
	d.exited = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop(t) })
	d.waitReady(t)
	return d
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("mxpolicyd exited at start-up:\n%s", d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mxpolicyd not listening on %s after 30s: %v\n%s", d.Addr, err, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM, which must end the daemon with exit status 0.
func (d *daemon) stop(t *testing.T) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("mxpolicyd did not exit within 20s of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("mxpolicyd exited with status %d after SIGTERM", code)
	}
	if t.Failed() {
		t.Logf("mxpolicyd log:\n%s", d.log)
	}
}

// decisions returns the daemon's "decision" log records so far.
func (d *daemon) decisions() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(d.log.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "decision" {
			out = append(out, rec)
		}
	}
	return out
}

// decisionsFor returns the decisions about rcpt. The daemon logs a
// decision as it answers, so by the time swaks has Postfix's reply to RCPT
// the record may still be in flight: wait briefly for want of them.
func (d *daemon) decisionsFor(t *testing.T, rcpt string, want int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []map[string]any
		for _, rec := range d.decisions() {
			if rec["rcpt"] == rcpt {
				got = append(got, rec)
			}
		}
		if len(got) >= want || time.Now().After(deadline) {
			if len(got) != want {
				t.Fatalf("mxpolicyd logged %d decisions for %s, want %d:\n%s", len(got), rcpt, want, d.log)
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer that the daemon's output goroutine and the
// test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

func (b *syncBuffer) String() string { return string(b.Bytes()) }
