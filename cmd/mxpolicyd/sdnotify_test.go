package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
)

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
