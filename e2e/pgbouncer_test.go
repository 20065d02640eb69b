package e2e

// mxpolicyd serve behind PgBouncer with pool_mode = transaction (README,
// "Behind PgBouncer"), as sites with many MX hosts run it: each
// transaction may run on another server connection, so nothing the
// daemon does while serving may rely on its session. The DSN says
// default_query_exec_mode=exec, because Debian 12's PgBouncer (1.18)
// keeps no prepared statement from one transaction to the next; the
// migrations, which hold a session advisory lock, run against PostgreSQL
// itself (auto_migrate: false), as the README says.

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

func TestBehindPgBouncer(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	direct := pgtest.New(t)
	// Two server connections for the daemon's ten: transactions of
	// one client connection land on different servers.
	pooled := pgtest.PgBouncer(t, direct, 2) + "&default_query_exec_mode=exec"
	mx(t, "migrate", "--database", direct)
	d := startDaemon(t, daemontest.Options{Config: outageConfig + "auto_migrate: false\n", Database: pooled})
	d.WaitLog(t, "database ready")

	// Greylisting: 8 connections of new triplets, each one deferred by
	// the greylist check itself, none failed open.
	l := startLoad(t, d.Addr, loadOptions{Conns: 8, Pause: 5 * time.Millisecond, Max: 800,
		Triplet: freshTriplets("bouncer")})
	time.Sleep(2 * time.Second)
	s := l.Stop()
	if len(s.Errors) > 0 || s.ByVerb[verbDefer] != s.Count || s.Count == 0 {
		t.Fatalf("new triplets through PgBouncer: %v; want every one deferred", s)
	}
	if n := failOpen(d); n > 0 {
		t.Fatalf("%d decisions failed open through PgBouncer: %v", n, d.Decisions()[0])
	}
	// A retry after the delay passes: the row written through one server
	// connection is read through another.
	passGreylist(t, d, triplet{"192.0.2.80", "alice@bouncer.test", "bob@example.test"})

	// The decision log's COPY transactions get through too.
	want := s.Count + 2
	conn, err := pgx.Connect(context.Background(), direct)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows int
	for deadline := time.Now().Add(10 * time.Second); rows < want && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM decisions").Scan(&rows); err != nil {
			t.Fatal(err)
		}
	}
	if rows < want {
		t.Errorf("decision log: %d rows, want %d", rows, want)
	}

	// An admin command through the pool reaches the daemon.
	listed := triplet{"198.51.100.9", "carol@bouncer.test", "dave@example.test"}
	mx(t, "whitelist", "add", "client", listed.Client, "--database", pooled)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := ask(t, d.Addr, listed)
		if r.Err == nil && r.Verb() == verbDunno {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("whitelisted through PgBouncer, %s still got %q, %v", listed.Client, r.Action, r.Err)
		}
	}
	if n := failOpen(d); n > 0 {
		t.Errorf("%d decisions failed open through PgBouncer", n)
	}
}
