package policy

import (
	"io"
	"strings"
	"testing"
	"time"
)

// An idle connection reads the first byte of a request on its own; the
// request is parsed with that byte in front of the rest.
func TestServerFirstByteAlone(t *testing.T) {
	addr := startServer(t, &Server{Decider: &echoDecider{}})
	c, br := dial(t, addr)
	for _, rcpt := range []string{"a@x", "b@x"} {
		req := block(rcpt, "", "m1")
		io.WriteString(c, req[:1])
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, req[1:])
		if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt "+rcpt {
			t.Fatalf("reply %q", got)
		}
	}
}

// Readers are pooled across servers; each request still gets a buffer
// sized by its own server's max_line_bytes, so an over-long line closes
// the connection on the server with the small limit only.
func TestServerPooledReaderKeepsLineLimit(t *testing.T) {
	small := startServer(t, &Server{Decider: &echoDecider{},
		ServerConfig: ServerConfig{Limits: Limits{MaxLine: 100, MaxAttrs: 16, MaxRequest: 4096}}})
	large := startServer(t, &Server{Decider: &echoDecider{}})
	long := block("a@x", "s"+strings.Repeat("x", 200)+"@x", "m1")
	for range 3 {
		c, br := dial(t, large)
		io.WriteString(c, long)
		if got := readReply(t, br); got != "action=DEFER_IF_PERMIT rcpt a@x" {
			t.Fatalf("default limits: reply %q", got)
		}
		c, br = dial(t, small)
		io.WriteString(c, long)
		expectClosed(t, br)
	}
}
