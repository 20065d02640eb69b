package policy

import (
	"testing"
	"time"
)

// parked is how many connections wait in s's poller.
func parked(s *Server) int {
	s.mu.Lock()
	p := s.poller
	s.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// A poller whose epoll descriptor fails gives its parked connections back
// to goroutines of their own: the next request on one is answered, not
// left unread until the idle timeout while Postfix waits for its reply.
func TestPollerFailureResumesParked(t *testing.T) {
	s := &Server{Decider: &echoDecider{}}
	addr := startServer(t, s)
	c, br := dial(t, addr)
	askOK(t, c, br, "a@x")
	for deadline := time.Now().Add(5 * time.Second); parked(s) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the idle connection was never parked")
		}
	}
	s.mu.Lock()
	s.poller.f.Close() // the descriptor fails under the poller's loop
	s.mu.Unlock()
	c.SetDeadline(time.Now().Add(3 * time.Second)) // the idle timeout is minutes
	askOK(t, c, br, "b@x")
	if n := parked(s); n != 0 {
		t.Errorf("%d connections parked in a failed poller", n)
	}
}
