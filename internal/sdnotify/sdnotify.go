// Package sdnotify tells systemd what state the daemon is in, for a unit
// of Type=notify (systemd.service(5), "Type="). The protocol is
// sd_notify(3)'s: one datagram of newline-separated VARIABLE=value
// assignments, sent to the AF_UNIX socket that $NOTIFY_SOCKET names; a
// name that begins with "@" is in the abstract namespace.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"time"
)

// States serve sends (sd_notify(3), "Well-known assignments").
const (
	// Ready: start-up is finished; systemd then counts the unit started
	// and starts the units ordered after it.
	Ready = "READY=1"
	// Stopping: the daemon has begun to shut down.
	Stopping = "STOPPING=1"
)

// sendTimeout bounds the send: a datagram to a receiver whose queue is
// full would otherwise wait.
const sendTimeout = time.Second

// Send sends state to the service manager. It reports false, and does
// nothing, when $NOTIFY_SOCKET is unset: not started by systemd, or by a
// unit of another Type.
func Send(state string) (sent bool, err error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] != '/' && name[0] != '@' {
		return false, fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q: want an absolute path or an abstract name (@...)", name)
	}
	// Go's net package maps a leading "@" to the abstract namespace.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	return true, nil
}
