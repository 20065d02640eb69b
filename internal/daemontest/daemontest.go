// Package daemontest runs the built mxpolicyd binary for tests: Build
// compiles it once, Start runs "mxpolicyd serve" on a free loopback port
// with its JSON log captured, and the test ends it with SIGTERM, which
// must give exit status 0. cmd/mxpolicyd's transcript and signal tests and
// the end-to-end tests in e2e share it.
package daemontest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
)

// Options configure one daemon. In Config, Files and Listen, "$DIR" stands
// for the daemon's directory.
type Options struct {
	// Dir is the daemon's directory, where Config, Files and the default
	// database are written. Empty means the test's t.TempDir().
	Dir string
	// Config, when set, is written to $DIR/mxpolicyd.yaml and passed as
	// --config.
	Config string
	// Files are written to $DIR before the daemon starts.
	Files map[string]string
	// Database is the DSN; empty means an SQLite file in $DIR.
	Database string
	// Listen adds listeners (--listen values) to the loopback TCP one.
	Listen []string
	// Args are more serve flags, given after the harness's own so they win
	// (a --database here replaces the default one).
	Args []string
	// Env adds variables (KEY=value) to the environment the daemon
	// inherits from the test.
	Env []string
	// Stderr, when set, receives the daemon's log instead of Log: a pipe
	// the test leaves unread stalls the log sink.
	Stderr *os.File
}

// Daemon is one running "mxpolicyd serve".
type Daemon struct {
	Addr string // the loopback TCP policy listener
	Dir  string
	Cmd  *exec.Cmd
	Log  *logtest.Buffer // stdout and stderr: JSON log records, one a line

	exited  chan struct{}
	killed  bool
	stopped bool
}

// Start runs bin serve with opt, waits until it accepts connections, and
// stops it when the test ends, logging its output if the test failed.
func Start(t testing.TB, bin string, opt Options) *Daemon {
	t.Helper()
	d := Launch(t, bin, opt)
	d.WaitReady(t)
	return d
}

// Launch starts the daemon as Start does, but returns at once, for a test
// that acts while it is still starting; WaitReady then waits for it.
func Launch(t testing.TB, bin string, opt Options) *Daemon {
	t.Helper()
	d := &Daemon{Addr: FreeAddr(t), Dir: opt.Dir, Log: &logtest.Buffer{}}
	if d.Dir == "" {
		d.Dir = t.TempDir()
	}
	expand := func(s string) string { return strings.ReplaceAll(s, "$DIR", d.Dir) }
	for name, data := range opt.Files {
		writeFile(t, filepath.Join(d.Dir, name), expand(data))
	}
	database := opt.Database
	if database == "" {
		database = filepath.Join(d.Dir, "mxpolicyd.db")
	}
	args := []string{"serve", "--listen", d.Addr, "--database", database, "--log-format", "json"}
	if opt.Config != "" {
		cfg := filepath.Join(d.Dir, "mxpolicyd.yaml")
		writeFile(t, cfg, expand(opt.Config))
		args = append(args, "--config", cfg)
	}
	for _, l := range opt.Listen {
		args = append(args, "--listen", expand(l))
	}
	d.Cmd = exec.Command(bin, append(args, opt.Args...)...)
	d.Cmd.Stdout, d.Cmd.Stderr = d.Log, d.Log
	if opt.Env != nil {
		d.Cmd.Env = append(os.Environ(), opt.Env...)
	}
	if opt.Stderr != nil {
		d.Cmd.Stderr = opt.Stderr
	}
	if err := d.Cmd.Start(); err != nil {
		t.Fatalf("start mxpolicyd: %v", err)
	}
	d.exited = make(chan struct{})
	go func() { _ = d.Cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.Stop(t)
		if t.Failed() {
			t.Logf("mxpolicyd log:\n%s", d.Log)
		}
	})
	return d
}

// FreeAddr is a loopback address whose port nobody listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// WaitReady dials Addr until the daemon accepts, which it does before the
// database is reached; the test fails if the daemon exits first.
func (d *Daemon) WaitReady(t testing.TB) {
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
			t.Fatalf("mxpolicyd exited at start-up:\n%s", d.Log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mxpolicyd not listening on %s after 30s: %v\n%s", d.Addr, err, d.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM, which must end the daemon with exit status 0 within
// 30 s. Only the first call (a test's own, or the cleanup's) checks.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	if d.stopped {
		return
	}
	d.stopped = true
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.Cmd.Process.Kill()
		<-d.exited
		t.Errorf("mxpolicyd did not exit within 30s of SIGTERM")
		return
	}
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 && !d.killed {
		t.Errorf("mxpolicyd exited with status %d after SIGTERM", code)
	}
}

// Exited is closed once the daemon has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Kill ends the daemon with SIGKILL, as a crash would, and waits for it.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	if err := d.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	d.killed = true
}

// WaitLog waits up to 10 s for s to appear in the log.
func (d *Daemon) WaitLog(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.Log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", s, d.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Records returns the log records with message msg so far.
func (d *Daemon) Records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(d.Log.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// Decisions returns the "decision" records so far, one per answer.
func (d *Daemon) Decisions() []map[string]any { return d.Records("decision") }

// DecisionsFor returns the decisions about rcpt, failing the test unless
// there are want of them. The daemon logs a decision as it answers, so a
// client holding the reply may see the record still in flight: it waits
// up to 5 s for them.
func (d *Daemon) DecisionsFor(t testing.TB, rcpt string, want int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []map[string]any
		for _, rec := range d.Decisions() {
			if rec["rcpt"] == rcpt {
				got = append(got, rec)
			}
		}
		if len(got) >= want || time.Now().After(deadline) {
			if len(got) != want {
				t.Fatalf("mxpolicyd logged %d decisions for %s, want %d:\n%s", len(got), rcpt, want, d.Log)
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
