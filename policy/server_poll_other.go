//go:build !linux

package policy

// poller is Linux's epoll (server_poll_linux.go). Elsewhere there is none,
// and each connection waits for its next request in a goroutine.
type poller struct{}

func newPoller() *poller { return nil }

func (*poller) add(*conn) bool { return false }
func (*poller) forget(*conn)   {}
func (*poller) close()         {}
