package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// probeTimeout bounds the connect that tells a live unix socket from one
// left behind by a process that is gone.
const probeTimeout = 100 * time.Millisecond

// Listen opens a listener: "unix:/path" for a unix socket created with
// mode, anything else a TCP host:port. An existing socket file is replaced
// only when nothing answers on it (left by a crash); a socket another
// process listens on, or any other file, is an error.
func Listen(addr string, mode os.FileMode) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("policy: listen %s: %w", addr, err)
		}
		return ln, nil
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("policy: listen %s: %w", addr, err)
	}
	ln, err := bindUnix(path, mode)
	if err != nil {
		return nil, fmt.Errorf("policy: listen %s: %w", addr, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("policy: chmod %s: %w", path, err)
	}
	return ln, nil
}

// bindUnix listens on a new socket file at path that is never wider than
// mode: the socket's own mode, set before bind, is the file's, less the
// umask, which only narrows it (unix(7): bind creates the file from the
// socket's inode). Without it the file is 0777 less the umask until the
// chmod after it, and a client could connect in between. Listen's chmod
// then makes the mode exact.
func bindUnix(path string, mode fs.FileMode) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = syscall.Fchmod(int(fd), uint32(mode.Perm())) }); cerr != nil {
			return cerr
		}
		return err
	}}
	return lc.Listen(context.Background(), "unix", path)
}

// removeStaleSocket removes the socket file at path if connecting to it
// is refused (ECONNREFUSED: no process listens, see unix(7)). Removing a
// live one would silently cut its owner off from new connections.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return errors.New("file exists and is not a socket")
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("another process is listening on %s; stop it or choose another path", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether another process listens on %s: %w", path, err)
	}
	return os.Remove(path)
}
