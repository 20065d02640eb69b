//go:build unix

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
)

// A SIGHUP that comes while serve is still starting does not stop it: the
// reload it asks for runs once the daemon serves. The config file is a
// FIFO, so the test knows when serve is reading it (its open for writing
// returns) and holds serve there while the signal arrives.
func TestServeHangupDuringStartup(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "c.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Launch(t, binary, daemontest.Options{Args: []string{"--config", fifo}})
	f := openForReader(t, d, fifo)
	if err := d.Cmd.Process.Signal(hangup); err != nil {
		t.Fatal(err)
	}
	writeAndClose(t, f, "log: {level: info}\n")
	d.WaitReady(t)
	writeAndClose(t, openForReader(t, d, fifo), "log: {level: debug}\n")
	d.WaitLog(t, "config reloaded")
}

// openForReader opens the FIFO at path for writing, which returns once
// the daemon opens it to read; the test fails if the daemon exits or does
// not read it within 30 s.
func openForReader(t *testing.T, d *daemontest.Daemon, path string) *os.File {
	t.Helper()
	type opened struct {
		f   *os.File
		err error
	}
	done := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		done <- opened{f, err}
	}()
	var why string
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatal(o.err)
		}
		return o.f
	case <-d.Exited():
		why = "exited before reading its config"
	case <-time.After(30 * time.Second):
		why = "did not read its config within 30 s"
	}
	// A reader of our own lets the blocked open return.
	if r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
		r.Close()
	}
	t.Fatalf("mxpolicyd %s:\n%s", why, d.Log)
	return nil
}

func writeAndClose(t *testing.T, f *os.File, data string) {
	t.Helper()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Under a unit of Type=notify, serve tells systemd READY=1 only once its
// listener accepts and a reload works, and STOPPING=1 when SIGTERM begins
// its shutdown. The socket stands in for systemd's, which the protocol
// (sd_notify(3)) defines as any AF_UNIX datagram socket.
func TestServeNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	sd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	d := daemontest.Launch(t, binary, daemontest.Options{Env: []string{"NOTIFY_SOCKET=" + sock}})
	if got := notification(t, sd); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	c, err := net.DialTimeout("tcp", d.Addr, time.Second) // once, no retry: ready means listening
	if err != nil {
		t.Fatalf("READY=1 sent before the listener accepts: %v", err)
	}
	c.Close()
	if err := d.Cmd.Process.Signal(hangup); err != nil {
		t.Fatal(err)
	}
	d.WaitLog(t, "config reloaded")
	d.Stop(t)
	if got := notification(t, sd); got != "STOPPING=1" {
		t.Fatalf("notification at SIGTERM %q, want STOPPING=1", got)
	}
}

// notification is the next datagram on sd, waited for up to 30 s.
func notification(t *testing.T, sd *net.UnixConn) string {
	t.Helper()
	if err := sd.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := sd.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// A command blocked where its context cannot reach (here reading a stdin
// that never ends) stops its work on the first SIGTERM or Ctrl-C and
// ends at the second: the first gives the signals back their default.
func TestSecondSignalEndsABlockedCommand(t *testing.T) {
	cmd := exec.Command(binary, "check", "--stdin")
	stdin, err := cmd.StdinPipe() // held open, never written
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// A signal before main catches it ends the process (the Go runtime's
	// default): wait until the command is blocked reading its stdin.
	waitReadingStdin(t, cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		t.Fatal("the first SIGTERM ended the command: want it to stop its work and wait")
	case <-time.After(200 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("after the second SIGTERM: %v, want killed by it", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("a second SIGTERM did not end the command")
	}
}

// waitReadingStdin waits until a thread of process pid is blocked in
// read(2) on its stdin (/proc/PID/task/TID/syscall: "0 0x0 ...", proc(5)):
// main has set up its signals by then, before the command reads.
func waitReadingStdin(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, task := range tasks {
			if b, err := os.ReadFile(task); err == nil && strings.HasPrefix(string(b), "0 0x0 ") {
				return
			}
		}
	}
	t.Fatalf("process %d is not reading its stdin after 10s", pid)
}
