package policy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fdChildEnv makes the test binary the server of TestServerOutOfDescriptors:
// a process whose descriptor limit is far below max_connections.
const fdChildEnv = "MXPOLICYD_TEST_FD_CHILD"

// fdChildLimit is the child's RLIMIT_NOFILE, soft and hard.
const fdChildLimit = 48

// runFDChild serves on loopback with RLIMIT_NOFILE at fdChildLimit and
// the default max_connections (1000), logging to stderr, until killed.
func runFDChild() {
	lim := syscall.Rlimit{Cur: fdChildLimit, Max: fdChildLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	s := &Server{Decider: &echoDecider{}, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	fmt.Println(ln.Addr().String())
	s.Serve(ln)
	os.Exit(0)
}

// Descriptors run out before max_connections (the unit's LimitNOFILE, or
// a container's, below what max_connections and the rest of the daemon
// need): accept fails with EMFILE. Idle connections held by any local
// process must still not lock Postfix out (README, "Postfix
// integration": "At max_connections a new connection closes the one idle
// the longest, so idle sockets held by any local process cannot lock
// Postfix out"): the server closes the longest-idle one for its
// descriptor, and says so once, not per connection.
func TestServerOutOfDescriptors(t *testing.T) {
	if os.Getenv(fdChildEnv) == "1" {
		runFDChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerOutOfDescriptors$")
	cmd.Env = append(os.Environ(), fdChildEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logc := make(chan string, 1)
	go func() { b, _ := io.ReadAll(stderr); logc <- string(b) }()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	addr := strings.TrimSpace(line)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		t.Fatalf("child: %s", line)
	}

	// Twice as many connections as the child has descriptors, each asking
	// once and then idle, as a local process (or Postfix itself) holds
	// them: each is answered well inside Postfix's timeout=10s.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 2 * fdChildLimit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		br := bufio.NewReader(c)
		io.WriteString(c, block(fmt.Sprintf("r%d@x", i), "", "1"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("connection %d, with %d held idle: no reply within 5 s: %v", i, i, err)
		}
		br.ReadString('\n')
	}
	// The first ones were closed for their descriptors.
	held[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the longest-idle connection: read %v, want EOF (closed for its descriptor)", err)
	}
	cmd.Process.Kill()
	logs := <-logc
	var evicted, failed int
	for l := range strings.Lines(logs) {
		switch {
		case strings.Contains(l, "out of file descriptors"):
			evicted++
		case strings.Contains(l, "accept failed"):
			failed++
		}
	}
	if evicted != 1 || failed != 0 {
		t.Errorf("%d eviction and %d accept-failure warnings, want one eviction warning (one per 10 s):\n%s", evicted, failed, logs)
	}
}
