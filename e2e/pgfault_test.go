package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// The tests here break the PostgreSQL server under a running daemon and
// assert what Postfix would see: an answer to every request within the
// request budget, never a closed connection or a malformed reply; DUNNO
// while the database is away (checks.greylist.on_error's default, fail
// open: mail passes ungreylisted rather than being deferred or lost); and
// exact greylisting again once it is back, without restarting the daemon.
// Each test owns its servers (pgtest.StartServer), never the shared one.

// outageConfig greylists with nothing that could answer without the
// database: no pass cache, no auto-whitelists. The delay is the 1 s
// minimum because the probes wait it out on the real clock; no X-Greylist
// header, so a pass is a plain DUNNO and the decision log tells it from a
// failure (error_greylist).
const outageConfig = baseConfig + `
greylist:
  delay: 1s
  cache_size: 0
  awl_pair: false
  awl_client_passes: 0
  header: false
`

const (
	// outage is how long a fault lasts: longer than the budget, so a
	// request left waiting on the dead server would show.
	outage = 8 * time.Second
	// resumeLimit bounds how long greylisting may take to come back once
	// the server accepts connections again. The daemon retries a lost
	// server with a backoff capped at 5 s (internal/db/connector.go), so
	// after these short outages its next attempt comes well within it.
	resumeLimit = 30 * time.Second
	verbDefer   = "DEFER_IF_PERMIT"
	verbDunno   = "DUNNO"
)

// PostgreSQL crashes ("pg_ctl stop -m immediate") and comes back on the
// same port.
func TestPostgresStopUnderLoad(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	testOutage(t, (*pgtest.Server).Stop, (*pgtest.Server).Start)
}

// PostgreSQL hangs: the postmaster and every backend are stopped with
// SIGSTOP, so connections are accepted by the kernel but never answered,
// then resumed with SIGCONT.
func TestPostgresFrozenUnderLoad(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	testOutage(t, (*pgtest.Server).Freeze, (*pgtest.Server).Thaw)
}

type fault func(*pgtest.Server, testing.TB)

func testOutage(t *testing.T, breakDB, repairDB fault) {
	srv := pgtest.StartServer(t)
	d := startDaemonReady(t, outageConfig, srv.CreateDatabase(t, "mxpolicyd"))
	passed := triplet{"192.0.2.10", "old@passed.test", "passed@example.test"}
	passGreylist(t, d, passed)
	pending := triplet{"192.0.2.20", "new@pending.test", "pending@example.test"}
	pendingSeen := time.Now()
	expect(t, d.Addr, pending, verbDefer)
	srv.WaitFlushed(t, resumeLimit) // greylist writes commit asynchronously

	l := startLoad(t, d.Addr, loadOptions{Triplet: freshTriplets("outage")})
	l.WaitFor(t, verbDefer, 0, resumeLimit)
	breakDB(srv, t)
	down := l.Since()
	time.Sleep(outage)
	r := recoverUnderLoad(t, l, down, func() { repairDB(srv, t) })
	t.Logf("figures: greylisting resumed %v after the server was back; %d fail-open answers in the daemon's log; load %v",
		(r.resumed.Done() - r.ready).Round(time.Millisecond), failOpen(d), r.s)

	// Greylisting is exact again: the passed triplet passes, the one first
	// seen before the outage passes on its retry, a new one is deferred.
	time.Sleep(time.Until(pendingSeen.Add(time.Second + 100*time.Millisecond)))
	expectGreylistPass(t, d, passed, 3)
	expectGreylistPass(t, d, pending, 2)
	expect(t, d.Addr, triplet{"192.0.2.30", "after@outage.test", "after@example.test"}, verbDefer)
}

// mxpolicyd serve starts while PostgreSQL is down: it listens and answers
// at once, failing open, reports not ready on /readyz, and greylists as
// soon as the server is up, without a restart.
func TestServeStartsWithPostgresDown(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	srv := pgtest.StartServer(t)
	dsn := srv.CreateDatabase(t, "mxpolicyd")
	srv.Stop(t)
	d, metrics := startFailingOpen(t, dsn, triplet{"192.0.2.40", "early@down.test", "early@example.test"})

	l := startLoad(t, d.Addr, loadOptions{Triplet: freshTriplets("startdown")})
	time.Sleep(2 * time.Second)
	r := recoverUnderLoad(t, l, 0, func() { srv.Start(t) })
	expectReady(t, metrics, http.StatusOK)
	// The readiness probe also measures the server's clock, which is this
	// machine's (internal/db/clock.go).
	if off := metricValue(t, "http://"+metrics+"/metrics", "mxpolicyd_database_clock_offset_seconds"); math.Abs(off) > 1 {
		t.Errorf("database clock offset %v s between this machine and its own server, want within 1 s", off)
	}
	t.Logf("figures: greylisting began %v after the server was up; %d fail-open answers; load %v",
		(r.resumed.Done() - r.ready).Round(time.Millisecond), failOpen(d), r.s)

	late := triplet{"192.0.2.41", "late@up.test", "late@example.test"}
	passGreylist(t, d, late)
}

// PostgreSQL is up but refuses the daemon every connection: other sessions
// hold all the slots its role may use (CONNECTION LIMIT), so each attempt
// ends in FATAL 53300, too_many_connections (PostgreSQL documentation,
// appendix A), as when other clients take the server's max_connections.
// serve answers at once, failing open, reports not ready, and greylists as
// soon as a slot is free, without a restart.
func TestPostgresConnectionSlotsFull(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	srv := pgtest.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	const slots = 2
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE mxpolicyd LOGIN CONNECTION LIMIT %d", slots),
		"CREATE DATABASE mxpolicyd OWNER mxpolicyd",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	dsn := fmt.Sprintf("postgres://mxpolicyd@127.0.0.1:%d/mxpolicyd?sslmode=disable", srv.Port)
	holders := make([]*pgx.Conn, slots)
	for i := range holders {
		if holders[i], err = pgx.Connect(ctx, dsn); err != nil {
			t.Fatalf("holding slot %d: %v", i, err)
		}
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("a connection beyond the role's limit was accepted: the fault is not set up")
	}

	d, metrics := startFailingOpen(t, dsn, triplet{"192.0.2.50", "early@full.test", "early@example.test"})

	for _, c := range holders {
		c.Close(ctx)
	}
	freed := time.Now()
	for i := 0; ; i++ {
		tr := triplet{"192.0.2.51", fmt.Sprintf("s%d@freed.test", i), "late@example.test"}
		r := ask(t, d.Addr, tr)
		if r.Err != nil || r.Latency >= requestBudget+replyGrace {
			t.Fatalf("%s after the slots were freed: %q, %v after %v", tr.Sender, r.Action, r.Err, r.Latency)
		}
		if r.Verb() == verbDefer {
			t.Logf("figures: greylisting resumed %v after the slots were freed", time.Since(freed).Round(time.Millisecond))
			break
		}
		if time.Since(freed) > resumeLimit {
			t.Fatalf("greylisting not back %v after the slots were freed: %q", resumeLimit, r.Action)
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectReady(t, metrics, http.StatusOK)
}

// startFailingOpen starts a daemon, with a metrics listener, on a
// database it cannot reach, and checks what it does meanwhile: first gets
// DUNNO, from a failed greylist check, and /readyz says 503. It returns
// the daemon and the metrics address.
func startFailingOpen(t *testing.T, dsn string, first triplet) (*daemontest.Daemon, string) {
	t.Helper()
	metrics := fmt.Sprintf("127.0.0.1:%d", postfixtest.FreePort(t))
	d := startDaemon(t, daemontest.Options{Config: outageConfig + "metrics:\n  listen: " + metrics + "\n", Database: dsn})
	expect(t, d.Addr, first, verbDunno)
	if rec := d.DecisionsFor(t, first.Rcpt, 1)[0]; rec["error_greylist"] == nil {
		t.Errorf("with the database unreachable, the DUNNO did not come from a failed greylist check: %v", rec)
	}
	expectReady(t, metrics, http.StatusServiceUnavailable)
	return d, metrics
}

// passGreylist makes tr a passed triplet: deferred at first sight, passed
// by greylisting on its retry after the 1 s delay.
func passGreylist(t *testing.T, d *daemontest.Daemon, tr triplet) {
	t.Helper()
	seen := time.Now()
	expect(t, d.Addr, tr, verbDefer)
	time.Sleep(time.Until(seen.Add(time.Second + 100*time.Millisecond)))
	expectGreylistPass(t, d, tr, 2)
}

// expectGreylistPass asks tr and wants it passed by the greylist check
// itself, the nth decision about its recipient: a DUNNO alone could be a
// failure answered open.
func expectGreylistPass(t *testing.T, d *daemontest.Daemon, tr triplet, nth int) {
	t.Helper()
	expect(t, d.Addr, tr, verbDunno)
	rec := d.DecisionsFor(t, tr.Rcpt, nth)[nth-1]
	if rec["check"] != "greylist" || rec["error_greylist"] != nil {
		t.Errorf("%s: passed by check %v (error %v), want a pass by greylist", tr.Rcpt, rec["check"], rec["error_greylist"])
	}
}

// expect asks tr once and wants verb, within the budget.
func expect(t *testing.T, addr string, tr triplet, verb string) {
	t.Helper()
	r := ask(t, addr, tr)
	if r.Err != nil || r.Verb() != verb || r.Latency >= requestBudget+replyGrace {
		t.Fatalf("%s from %s: got %q, %v after %v; want %s within %v",
			tr.Rcpt, tr.Client, r.Action, r.Err, r.Latency, verb, requestBudget+replyGrace)
	}
}

// recovery is what a load saw around a repair of the database: the
// instants the repair began and was done, and the first deferral after it.
type recovery struct {
	s            loadSummary
	began, ready time.Duration
	resumed      result
}

// recoverUnderLoad repairs the database under l, which has seen it down
// since down; waits for greylisting to resume, keeps the load two more
// seconds (greylisting must stay exact, not flap) and stops it. Every
// request must have been answered, every answer from down until the
// repair began must have failed open, and greylisting must have resumed
// for good.
func recoverUnderLoad(t *testing.T, l *load, down time.Duration, repair func()) recovery {
	t.Helper()
	r := recovery{began: l.Since()}
	repair()
	r.ready = l.Since()
	r.resumed = l.WaitFor(t, verbDefer, r.ready, resumeLimit)
	time.Sleep(2 * time.Second)
	r.s = l.Stop()
	assertAnswered(t, r.s)
	assertFailOpen(t, r.s.Between(down, r.began))
	assertGreylisting(t, r.s, r.resumed)
	return r
}

// assertAnswered: every request had a well-formed reply within the budget
// (plus replyGrace); no connection was closed.
func assertAnswered(t *testing.T, s loadSummary) {
	t.Helper()
	if len(s.Errors) > 0 {
		t.Errorf("%d protocol errors (%d closed connections), first: %v", len(s.Errors), s.Closed, s.Errors[0])
	}
	if s.MaxLatency >= requestBudget+replyGrace {
		t.Errorf("slowest answer took %v, over the %v request budget", s.MaxLatency, requestBudget)
	}
	if s.Count == 0 {
		t.Error("the load sent nothing")
	}
}

// assertFailOpen: while the database was away, every answer was DUNNO.
func assertFailOpen(t *testing.T, s loadSummary) {
	t.Helper()
	if s.Count == 0 || s.ByVerb[verbDunno] != s.Count {
		t.Errorf("while the database was down: %v; want only DUNNO", s)
	}
}

// assertGreylisting: every new triplet asked after the first deferral was
// answered was deferred; greylisting came back for good, it does not flap.
// (A request sent a moment before that answer may still have failed
// open.)
func assertGreylisting(t *testing.T, s loadSummary, resumed result) {
	t.Helper()
	after := s.Between(resumed.Done(), time.Duration(math.MaxInt64))
	if after.Count == 0 {
		t.Errorf("no request answered after greylisting resumed: %v", s)
	}
	if n := after.Count - after.ByVerb[verbDefer]; n != 0 {
		t.Errorf("after greylisting resumed, %d of %d new triplets were not deferred: %v", n, after.Count, after)
	}
}

// failOpen counts the daemon's decisions that answered despite a failed
// greylist check.
func failOpen(d *daemontest.Daemon) int {
	n := 0
	for _, rec := range d.Decisions() {
		if rec["error_greylist"] != nil {
			n++
		}
	}
	return n
}

// startDaemonReady starts a daemon on database with a metrics listener
// and waits until /readyz says the database is reachable: serve listens
// before its first connection to PostgreSQL succeeds.
func startDaemonReady(t *testing.T, config, database string) *daemontest.Daemon {
	t.Helper()
	metrics := fmt.Sprintf("127.0.0.1:%d", postfixtest.FreePort(t))
	d := startDaemon(t, daemontest.Options{Config: config + "metrics:\n  listen: " + metrics + "\n", Database: database})
	deadline := time.Now().Add(resumeLimit)
	for readyz(metrics) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 after %v", resumeLimit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// readyz is the status of GET /readyz, 0 when there is no answer.
func readyz(addr string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// expectReady wants /readyz to answer code.
func expectReady(t *testing.T, addr string, code int) {
	t.Helper()
	if got := readyz(addr); got != code {
		t.Errorf("/readyz: %d, want %d", got, code)
	}
}

// A table the daemon writes is locked and stays locked, as by a migration
// or an administrator's forgotten transaction (LOCK TABLE ... IN ACCESS
// EXCLUSIVE MODE in a session left open). The server answers, so the
// readiness probe, which touches no table, finds nothing wrong, but every
// greylisting statement waits on the lock. The first few requests wait
// out greylisting's share and fail open; then the check is paused
// (policy/pause.go) and requests fail open at once, one a second trying
// the store again. Once the lock is released, greylisting resumes.
func TestPostgresTableLocked(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	dsn := pgtest.New(t)
	d := startDaemon(t, daemontest.Options{Config: outageConfig, Database: dsn})
	d.WaitLog(t, "database ready")
	ctx := context.Background()
	locker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := tx.Exec(ctx, "LOCK TABLE greylist_triplet IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	const n = 12
	var slow []time.Duration
	started := time.Now()
	for i := range n {
		tr := triplet{fmt.Sprintf("192.0.2.%d", 100+i), fmt.Sprintf("s%d@locked.test", i), "locked@example.test"}
		r := ask(t, d.Addr, tr)
		if r.Err != nil || r.Verb() != verbDunno || r.Latency >= requestBudget+replyGrace {
			t.Fatalf("request %d with the table locked: %q, %v after %v; want DUNNO (fail open) in time", i+1, r.Action, r.Err, r.Latency)
		}
		if r.Latency > 500*time.Millisecond {
			slow = append(slow, r.Latency.Round(time.Millisecond))
		}
	}
	elapsed := time.Since(started)
	// The first three waited; the nine after them answer in well under
	// the second after which one would try the store again (without the
	// pause, all twelve wait).
	if len(slow) > 4 {
		t.Errorf("%d of %d requests waited on the lock (%v) in %v; want at most 4", len(slow), n, slow, elapsed.Round(time.Millisecond))
	}
	for _, rec := range d.DecisionsFor(t, "locked@example.test", n) {
		if rec["error_greylist"] == nil {
			t.Errorf("a DUNNO with the table locked did not come from a failed greylist check: %v", rec)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	for deadline := released.Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		tr := triplet{"198.51.100.77", fmt.Sprintf("after%d@unlocked.test", time.Now().UnixNano()), "bob@example.test"}
		if r := ask(t, d.Addr, tr); r.Err == nil && r.Verb() == verbDefer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("greylisting did not resume within 5 s of the lock's release")
		}
	}
	t.Logf("figures: %d of %d requests waited on the lock (%v) over %v; greylisting resumed %v after the release",
		len(slow), n, slow, elapsed.Round(time.Millisecond), time.Since(released).Round(time.Millisecond))
}

// The DSN names a hot standby, as a virtual IP left on the old primary's
// replica or a host name written wrong would: the server answers every
// read and refuses every write. serve says so (/readyz 503 "database is
// read-only", one log line) and fails open at once, instead of sending
// each decision to fail at the server; once the server is promoted, it
// greylists, without a restart.
func TestServeOnStandby(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	primary := pgtest.StartServer(t)
	primary.CreateDatabase(t, "mxpolicyd")
	mx(t, "migrate", "--database", primary.DSN("mxpolicyd"))
	standby := primary.StartStandby(t)
	standby.WaitReplayed(t, primary, resumeLimit)

	metrics := fmt.Sprintf("127.0.0.1:%d", postfixtest.FreePort(t))
	d := startDaemon(t, daemontest.Options{Config: outageConfig + "metrics:\n  listen: " + metrics + "\n",
		Database: standby.DSN("mxpolicyd")})
	d.WaitLog(t, "database is read-only")
	if code, body := readyzBody(t, metrics); code != http.StatusServiceUnavailable || !strings.Contains(body, "database is read-only") {
		t.Errorf("/readyz on a standby: %d %q, want 503 naming the read-only database", code, body)
	}
	first := triplet{"192.0.2.60", "early@standby.test", "early@example.test"}
	expect(t, d.Addr, first, verbDunno)
	rec := d.DecisionsFor(t, first.Rcpt, 1)[0]
	if msg, _ := rec["error_greylist"].(string); !strings.Contains(msg, "read-only") {
		t.Errorf("the fail-open decision's greylist error %q does not say the database is read-only", msg)
	}

	primary.Stop(t)
	standby.Promote(t)
	promoted := time.Now()
	for deadline := promoted.Add(resumeLimit); ; time.Sleep(100 * time.Millisecond) {
		r := ask(t, d.Addr, triplet{"192.0.2.61", fmt.Sprintf("p%d@promoted.test", time.Now().UnixNano()), "late@example.test"})
		if r.Err == nil && r.Verb() == verbDefer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("greylisting did not begin within %v of the promotion", resumeLimit)
		}
	}
	expectReady(t, metrics, http.StatusOK)
	t.Logf("figures: greylisting began %v after the promotion", time.Since(promoted).Round(time.Millisecond))
}

// readyzBody is readyz with the body /readyz answered.
func readyzBody(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// PostgreSQL reached over TLS, the server's certificate checked against
// the site's authority (sslmode=verify-full, sslrootcert), as a database
// on another host is: greylisting works, and every session of the daemon
// is encrypted (pg_stat_ssl). Against the wrong authority the daemon does
// not connect, fails open and says why in its log, never showing the
// DSN's password.
func TestPostgresTLS(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	srv, ca := pgtest.StartTLSServer(t)
	srv.CreateDatabase(t, "mxpolicyd")
	tlsDSN := func(root string) string {
		return fmt.Sprintf("postgres://postgres:s3cret@127.0.0.1:%d/mxpolicyd?sslmode=verify-full&sslrootcert=%s", srv.Port, root)
	}
	d := startDaemonReady(t, outageConfig, tlsDSN(ca))
	passGreylist(t, d, triplet{"192.0.2.90", "alice@tls.test", "bob@example.test"})

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.DSN("mxpolicyd")) // without TLS: the server takes both
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var sessions int
	var allTLS bool
	err = conn.QueryRow(ctx, `SELECT count(*), coalesce(bool_and(s.ssl), false)
		FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'mxpolicyd serve'`).
		Scan(&sessions, &allTLS)
	if err != nil {
		t.Fatal(err)
	}
	if sessions < 2 || !allTLS {
		t.Errorf("%d sessions of the daemon, all over TLS: %v; want the probe's and the pool's, all over TLS", sessions, allTLS)
	}

	wrong := startDaemon(t, daemontest.Options{Config: outageConfig, Database: tlsDSN(pgtest.NewCA(t, t.TempDir()))})
	// The connector's line, not the whitelist's earlier "database not
	// reachable": it says why.
	wrong.WaitLog(t, "failed to verify certificate")
	expect(t, wrong.Addr, triplet{"192.0.2.91", "carol@tls.test", "bob@example.test"}, verbDunno)
	if log := wrong.Log.String(); !strings.Contains(log, "certificate") || strings.Contains(log, "s3cret") {
		t.Errorf("with the wrong authority, the log should name the certificate and never the password:\n%s", log)
	}
}
