package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket at name, as systemd does for a unit, and
// points $NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSendReachesSocket(t *testing.T) {
	for name, path := range map[string]string{
		"path":     filepath.Join(t.TempDir(), "notify"),
		"abstract": "@mxpolicyd-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-"),
	} {
		t.Run(name, func(t *testing.T) {
			c := listen(t, path)
			for _, state := range []string{Ready, Stopping} {
				sent, err := Send(state)
				if !sent || err != nil {
					t.Fatalf("Send(%q) = %v, %v; want true, nil", state, sent, err)
				}
				if got := receive(t, c); got != state {
					t.Fatalf("systemd received %q, want %q", got, state)
				}
			}
		})
	}
}

func TestSendWithoutSystemdDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Send(Ready); sent || err != nil {
		t.Fatalf("Send without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
}

func TestSendBadSocket(t *testing.T) {
	for _, name := range []string{"relative/notify", filepath.Join(t.TempDir(), "nobody-listens")} {
		t.Setenv("NOTIFY_SOCKET", name)
		if sent, err := Send(Ready); sent || err == nil || !strings.HasPrefix(err.Error(), "sdnotify: ") {
			t.Errorf("NOTIFY_SOCKET=%s: Send = %v, %v; want false and an sdnotify error", name, sent, err)
		}
	}
}
