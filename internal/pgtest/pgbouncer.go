package pgtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// PgBouncer starts Debian's pgbouncer (package pgbouncer) in front of the
// database dsn names, with pool_mode = transaction and a pool of
// poolSize server connections, and returns the DSN of that database
// through it. It stops at the test's cleanup. As root it runs as the
// postgres user, as the cluster does: PgBouncer refuses to run as root.
//
// Nothing in its startup parameters is ignored (ignore_startup_parameters
// is empty), so a client that sends one PgBouncer does not know fails to
// connect, as it would in production.
func PgBouncer(t testing.TB, dsn string, poolSize int) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer" // Debian's, outside a user's PATH
	}
	if !isExec(bin) {
		t.Fatalf("pgtest: pgbouncer not found (install the Debian package pgbouncer)")
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Port() == "" {
		t.Fatalf("pgtest: PgBouncer needs a postgres:// URL with a port, got %q", dsn)
	}
	// Not t.TempDir: its parent is root's alone, and the postgres user
	// could not reach the files.
	dir, err := os.MkdirTemp("", "mxpolicyd-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ini := fmt.Sprintf(`[databases]
mx = host=%s port=%s dbname=%s user=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 500
logfile = %s
`, u.Hostname(), u.Port(), u.Path[1:], u.User.Username(), port,
		filepath.Join(dir, "users.txt"), poolSize, filepath.Join(dir, "pgbouncer.log"))
	files := map[string]string{
		"pgbouncer.ini": ini,
		"users.txt":     fmt.Sprintf("%q \"\"\n", u.User.Username()), // trust still needs the user listed
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		if cmd.SysProcAttr.Credential, err = giveTo(dir, "postgres"); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // immediate shutdown (pgbouncer(1), "Signals")
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgtest: pgbouncer exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: pgbouncer never listened on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	through := *u
	through.Host, through.Path = addr, "/mx"
	return through.String()
}
