//go:build unix

package main

import (
	"os"
	"path/filepath"
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
