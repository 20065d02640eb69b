package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL cluster that one test owns and may break: stop
// it hard, freeze it, start it again on the same port, or stand a hot
// standby beside it and promote that. The cluster behind New is shared by
// every test of the binary and must never be disturbed, so fault tests use
// a Server. Unlike the shared cluster, a Server keeps synchronous_commit
// on: a commit that returned survives "pg_ctl stop -m immediate", as it
// would a real crash of the server process. fsync stays off; nothing here
// simulates the loss of the operating system's page cache.
type Server struct {
	Port int

	c       *cluster
	running bool
	frozen  bool
}

// StartServer runs initdb and starts a cluster on a free loopback port.
// It is stopped and removed when the test ends. A missing PostgreSQL
// installation fails the test; it never skips.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return newServer(t, func(c *cluster) error { return c.initAndStart("") })
}

// newServer makes a cluster on a free loopback port and has create fill
// its directory and start it. The cluster is stopped and removed when the
// test ends, whether create got it running or not.
func newServer(t testing.TB, create func(c *cluster) error) *Server {
	t.Helper()
	c, err := newCluster()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s := &Server{c: c, Port: c.port}
	t.Cleanup(s.cleanup)
	if err := create(c); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s.running = true
	return s
}

// cleanup thaws and stops the cluster, then removes its directory.
func (s *Server) cleanup() {
	if s.frozen {
		_ = s.signalAll(syscall.SIGCONT)
	}
	if s.running {
		_ = s.c.stop() // also removes the directory
		return
	}
	s.c.removeDir()
}

// DSN is the URL of database name on this server, as the superuser.
func (s *Server) DSN(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name)
}

// CreateDatabase creates database name and returns its DSN.
func (s *Server) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, s.c.dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return s.DSN(name)
}

// Stop is "pg_ctl stop -m immediate": every server process quits at once,
// without a checkpoint, as in a crash; the next start runs crash recovery
// (PostgreSQL documentation, "Shutting Down the Server").
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if out, err := s.c.run("pg_ctl", "-D", s.c.data(), "-m", "immediate", "-w", "stop"); err != nil {
		t.Fatalf("pgtest: pg_ctl stop -m immediate: %v\n%s", err, out)
	}
	s.running = false
}

// Start starts a stopped server again, on the same port and data.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.c.start(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s.running = true
}

// Freeze stops the postmaster and every backend with SIGSTOP: connections
// stay open and new ones are queued by the kernel, but nothing answers,
// as with a server that hangs on storage or is swapped out. The
// postmaster goes first, so it forks no child that would escape.
func (s *Server) Freeze(t testing.TB) {
	t.Helper()
	if err := s.signalAll(syscall.SIGSTOP); err != nil {
		t.Fatalf("pgtest: freeze: %v", err)
	}
	s.frozen = true
}

// Thaw resumes a frozen server with SIGCONT.
func (s *Server) Thaw(t testing.TB) {
	t.Helper()
	if err := s.signalAll(syscall.SIGCONT); err != nil {
		t.Fatalf("pgtest: thaw: %v", err)
	}
	s.frozen = false
}

// signalAll sends sig to the postmaster, then to each of its children.
func (s *Server) signalAll(sig syscall.Signal) error {
	pm, err := s.postmasterPID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pm, sig); err != nil {
		return fmt.Errorf("postmaster %d: %w", pm, err)
	}
	for _, pid := range childrenOf(pm) {
		_ = syscall.Kill(pid, sig) // a backend may have exited meanwhile
	}
	return nil
}

// postmasterPID reads the first line of postmaster.pid (PostgreSQL
// documentation, "Database File Layout").
func (s *Server) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.c.data(), "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// childrenOf lists the processes whose parent is pid, from /proc/*/stat
// (proc(5): the fourth field is the parent's pid; the second, the command
// name in parentheses, may itself contain spaces).
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:])) // state, ppid, ...
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			kids = append(kids, child)
		}
	}
	return kids
}

// StartStandby makes a streaming-replication hot standby of s with
// "pg_basebackup -R" (which writes primary_conninfo and standby.signal)
// and starts it on its own port (PostgreSQL documentation, "Log-Shipping
// Standby Servers"). initdb's pg_hba.conf already trusts replication
// connections from 127.0.0.1. The standby is stopped when the test ends.
func (s *Server) StartStandby(t testing.TB) *Server {
	t.Helper()
	return newServer(t, func(c *cluster) error {
		if out, err := c.run("pg_basebackup", "-D", c.data(), "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port),
			"-U", "postgres", "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
			return fmt.Errorf("pg_basebackup: %v\n%s", err, out)
		}
		if err := c.start(); err != nil {
			return fmt.Errorf("start standby: %v", err)
		}
		return nil
	})
}

// Promote turns a standby into a primary ("pg_ctl promote", which waits
// until the server accepts writes).
func (s *Server) Promote(t testing.TB) {
	t.Helper()
	if out, err := s.c.run("pg_ctl", "-D", s.c.data(), "-w", "-t", "60", "promote"); err != nil {
		t.Fatalf("pgtest: pg_ctl promote: %v\n%s", err, out)
	}
}

// WaitReplayed waits until standby s has replayed everything primary has
// inserted into its WAL so far, comparing pg_last_wal_replay_lsn() on s
// with pg_current_wal_insert_lsn() on primary (PostgreSQL documentation,
// "System Administration Functions"). The insert position, not the write
// position, so that a commit made with synchronous_commit off and still
// in WAL buffers is waited for too.
func (s *Server) WaitReplayed(t testing.TB, primary *Server, limit time.Duration) {
	t.Helper()
	s.waitLSN(t, primary, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, limit)
}

// WaitFlushed waits until the WAL inserted so far is flushed, so an
// immediate stop keeps it. A commit made with synchronous_commit off (as
// the greylist's are) returns before its WAL is flushed, which the WAL
// writer does within three times wal_writer_delay; a crash before that
// loses it (PostgreSQL documentation, "Asynchronous Commit").
func (s *Server) WaitFlushed(t testing.TB, limit time.Duration) {
	t.Helper()
	s.waitLSN(t, s, `SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn`, limit)
}

// waitLSN polls check on s, with $1 the WAL insert position of src when
// it was called, until check is true.
func (s *Server) waitLSN(t testing.TB, src *Server, check string, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var lsn string
	if err := queryRow(ctx, src.c.dsn, `SELECT pg_current_wal_insert_lsn()::text`, &lsn); err != nil {
		t.Fatalf("pgtest: WAL insert position on port %d: %v", src.Port, err)
	}
	for {
		var done bool
		err := queryRow(ctx, s.c.dsn, check, &done, lsn)
		if err == nil && done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pgtest: port %d has not reached WAL position %s after %v (last error: %v)", s.Port, lsn, limit, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func queryRow(ctx context.Context, dsn, sql string, dest any, args ...any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql, args...).Scan(dest)
}
