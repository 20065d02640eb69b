package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// importConfig gives mxpolicyd the longest greylist.delay it accepts
// after an import: far beyond any test run, so an imported pending
// triplet is certainly still early however slow the machine is, and
// nothing the test asserts depends on how long a step took.
const importConfig = baseConfig + "greylist:\n  delay: 1h\n"

// lateConfig is the daemon started once the imported pending triplet is
// at least lateAge old by its stored first attempt: its 1 s delay is then
// certainly over, so the triplet must pass.
const (
	lateConfig = baseConfig + "greylist:\n  delay: 1s\n"
	lateAge    = 2 * time.Second
)

// anchorPoll bounds the wait for an anchor's own delay (1 s) to run out
// by its clock; anchorStop bounds its exit after SIGTERM.
const (
	anchorPoll = 30 * time.Second
	anchorStop = 30 * time.Second
)

// sbin finds a program that lives in /usr/sbin, which a non-login root
// shell may lack in PATH.
func sbin(t *testing.T, prog string) string {
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	p := "/usr/sbin/" + prog
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not installed: run scripts/install-test-deps.sh", prog)
	}
	return p
}

// ownedDir is a temp dir the named system user owns: postgrey and
// SQLgrey drop root for it and write their databases there.
func ownedDir(t *testing.T, owner string) string {
	t.Helper()
	dir := postfixtest.TempDir(t, owner)
	t.Cleanup(func() { os.RemoveAll(dir) })
	u, err := user.Lookup(owner)
	if err != nil {
		t.Fatalf("user %s (made by its Debian package): %v", owner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// freeLoopback is a loopback address nobody listens on now.
func freeLoopback(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// anchor runs a real greylister (postgrey, sqlgrey) until stop, which
// ends it with SIGTERM so it closes its databases.
type anchor struct {
	cmd  *exec.Cmd
	log  *logtest.Buffer
	once sync.Once
}

func startAnchor(t *testing.T, addr string, prog string, args ...string) *anchor {
	t.Helper()
	a := &anchor{cmd: exec.Command(prog, args...), log: &logtest.Buffer{}}
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", prog, err)
	}
	t.Cleanup(func() { a.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s: %v\n%s", prog, addr, err, a.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop never fails the test: whatever the anchor must keep it has
// committed before answering (SQLgrey autocommits; postgrey's environment
// is transactional and read with db_dump -h), so a KILL after anchorStop
// loses nothing, and the import's counts would show it if it did.
func (a *anchor) stop(t *testing.T) {
	a.once.Do(func() {
		// Its process group: Net::Server may have forked.
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = a.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(anchorStop):
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Logf("%s did not stop within %v of SIGTERM; killed", a.cmd.Path, anchorStop)
		}
	})
}

// settle asks req until the anchor lets it through, by the anchor's own
// clock, and returns that answer; an early retry leaves its first attempt
// as it was (postgrey's smtpd_access_policy, SQLgrey's
// recently_in_connect), so polling does not move the goal.
func (a *anchor) settle(t *testing.T, addr, req string) string {
	t.Helper()
	deadline := time.Now().Add(anchorPoll)
	for {
		ans, _ := askOnce(t, addr, req)
		if !deferral(strings.ToUpper(ans)) {
			return ans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still defers a retry after %v: %s\n%s", a.cmd.Path, anchorPoll, ans, a.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mx runs the mxpolicyd binary and returns its output, failing on error.
func mx(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mxpolicyd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func wantIn(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// tripletReq is x's RCPT request; client_name=unknown as from a client
// without reverse DNS.
func tripletReq(x triplet) string {
	return faultRequest(x.Client, x.Sender, x.Rcpt, "imp."+x.Client+"."+x.Rcpt)
}

// sentAt is the span of wall-clock seconds in which an anchor received a
// request: its first attempt, as the anchor stores it, lies within.
type sentAt struct{ from, to int64 }

// first sends x to the anchor at addr, which must defer it as new.
func (a *anchor) first(t *testing.T, addr string, x triplet) sentAt {
	t.Helper()
	from := time.Now().Unix()
	if ans, _ := askOnce(t, addr, tripletReq(x)); !deferral(strings.ToUpper(ans)) {
		t.Fatalf("%s, first attempt: %s\n%s", a.cmd.Path, ans, a.log)
	}
	return sentAt{from, time.Now().Unix()}
}

// checkSeen checks the first attempt the anchor stored for its pending
// triplet against when it was sent.
func checkSeen(t *testing.T, anchor string, first int64, sent sentAt) {
	t.Helper()
	if first < sent.from || first > sent.to {
		t.Fatalf("%s stored the pending triplet's first attempt at %d, outside %d..%d when it was sent",
			anchor, first, sent.from, sent.to)
	}
}

// storedFirstSeen is mxpolicyd's first attempt of the pending triplet x
// in database, in Unix seconds.
func storedFirstSeen(t *testing.T, database string, x triplet) int64 {
	t.Helper()
	out := mx(t, "greylist", "list", "--database", database, "--state", "pending", "--format", "json", "--limit", "0")
	var rows []struct {
		RawSender string    `json:"raw_sender"`
		Recipient string    `json:"recipient"`
		FirstSeen time.Time `json:"first_seen"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("greylist list --format json: %v\n%s", err, out)
	}
	for _, r := range rows {
		if r.RawSender == x.Sender && r.Recipient == x.Rcpt {
			return r.FirstSeen.Unix()
		}
	}
	t.Fatalf("no pending triplet %s -> %s after the import:\n%s", x.Sender, x.Rcpt, out)
	return 0
}

// reason is the decision log's reason for the latest answer about x,
// waiting up to 5 s for the record (the daemon logs as it answers).
func reason(t *testing.T, d *daemontest.Daemon, x triplet) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := d.Decisions()
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i]["sender"] == x.Sender && recs[i]["rcpt"] == x.Rcpt {
				return fmt.Sprint(recs[i]["reason"])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no decision about %s -> %s:\n%s", x.Sender, x.Rcpt, d.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveImported runs mxpolicyd with config on database, ready to greylist.
func serveImported(t *testing.T, config, database string) *daemontest.Daemon {
	t.Helper()
	d := startDaemon(t, daemontest.Options{Config: config, Database: database})
	if strings.HasPrefix(database, "postgres") {
		d.WaitLog(t, "database ready") // until then greylisting fails open
	}
	return d
}

// checkAfterImport checks what mxpolicyd does with the import in
// database: what the anchor passed passes at once and a new triplet is
// greylisted. The anchor's pending triplet keeps the anchor's first
// attempt (first, Unix seconds), so under importConfig's delay it is an
// early retry of a known triplet, not a new one; and a daemon whose delay
// that first attempt has outlived lets it pass, without a retry to wait.
func checkAfterImport(t *testing.T, database string, passes []triplet, pending triplet, first int64, fresh triplet) {
	t.Helper()
	if got := storedFirstSeen(t, database, pending); got != first {
		t.Errorf("imported pending triplet first seen at %d, the anchor's first attempt was at %d", got, first)
	}
	d := serveImported(t, importConfig, database)
	for _, x := range passes {
		if a, _ := askOnce(t, d.Addr, tripletReq(x)); deferral(a) {
			t.Errorf("imported pass deferred: %s\n%s", a, tripletReq(x))
		}
	}
	if a, _ := askOnce(t, d.Addr, tripletReq(fresh)); !deferral(a) {
		t.Errorf("new triplet: %s, want a deferral", a)
	}
	if r := reason(t, d, fresh); r != "new triplet" {
		t.Errorf("new triplet: reason %q, want %q", r, "new triplet")
	}
	if a, _ := askOnce(t, d.Addr, tripletReq(pending)); !deferral(a) || !strings.Contains(a, "Greylisted") {
		t.Errorf("imported pending triplet before mxpolicyd's delay: %s, want a deferral", a)
	}
	if r := reason(t, d, pending); r != "early retry" {
		t.Errorf("imported pending triplet: reason %q, want %q (imported as pending, first attempt kept)", r, "early retry")
	}
	d.Stop(t)

	time.Sleep(time.Until(time.Unix(first, 0).Add(lateAge)))
	late := serveImported(t, lateConfig, database)
	if a, _ := askOnce(t, late.Addr, tripletReq(pending)); deferral(a) {
		t.Errorf("imported pending triplet %v after its first attempt, delay 1s: %s, want a pass",
			time.Since(time.Unix(first, 0)).Round(time.Second), a)
	}
	if r := reason(t, late, pending); r != "passed after delay" {
		t.Errorf("imported pending triplet after the delay: reason %q, want %q", r, "passed after delay")
	}
}

// postgrey (Debian's) greylists on loopback with a 1 s delay until it has
// a passed triplet, a pending one and an auto-whitelist count; then its
// BerkeleyDB files are imported, dumped by db_dump, into both stores.
func TestImportPostgrey(t *testing.T) {
	postfixtest.Require(t, "postgrey", "db_dump")
	t.Parallel()
	dir, addr := ownedDir(t, "postgrey"), freeLoopback(t)
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pg := startAnchor(t, addr, sbin(t, "postgrey"), "--inet="+addr, "--dbdir="+dir, "--delay=1",
		"--whitelist-clients="+empty, "--whitelist-recipients="+empty)
	passed := triplet{"192.0.2.10", "alice@a.test", "bob@b.test"}
	pending := triplet{"198.51.100.20", "carol@c.test", "dan@d.test"}
	pg.first(t, addr, passed)
	sent := pg.first(t, addr, pending)
	if a := pg.settle(t, addr, tripletReq(passed)); !strings.HasPrefix(a, "PREPEND X-Greylist") {
		t.Fatalf("postgrey, retry after its delay: %s\n%s", a, pg.log)
	}
	pg.stop(t)
	first := postgreyFirst(t, dir, pending)
	checkSeen(t, "postgrey", first, sent)
	files := []string{filepath.Join(dir, "postgrey.db"), filepath.Join(dir, "postgrey_clients.db")}

	eachStore(t, func(t *testing.T, database string) {
		if database == "" {
			database = filepath.Join(t.TempDir(), "mx.db")
		}
		args := append([]string{"import", "postgrey", "--database", database, "--delay", "1"}, files...)
		wantIn(t, mx(t, args...), "read 1 passed and 1 pending triplets, 1 auto-whitelisted clients",
			"loaded 2 of 2 triplets, 1 of 1 clients")
		wantIn(t, mx(t, args...), "loaded 0 of 2 triplets, 0 of 1 clients")
		checkAfterImport(t, database, []triplet{{"192.0.2.77", "alice@a.test", "bob@b.test"}},
			pending, first, triplet{"192.0.2.10", "erin@e.test", "bob@b.test"})
	})
}

// postgreyFirst reads x's first attempt from postgrey.db in dir, whose
// key is "CLIENT/SENDER/RECIPIENT" and value "FIRST,LAST" (postgrey's
// smtpd_access_policy). It runs db_dump -p -h itself, so the check does
// not take the importer's word for what postgrey stored.
func postgreyFirst(t *testing.T, dir string, x triplet) int64 {
	t.Helper()
	out, err := exec.Command(sbin(t, "db_dump"), "-p", "-h", dir, "postgrey.db").Output()
	if err != nil {
		t.Fatalf("db_dump postgrey.db: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if !strings.HasSuffix(sc.Text(), "/"+x.Sender+"/"+x.Rcpt) || !sc.Scan() {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimSpace(sc.Text()), ",")
		first, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("postgrey.db value %q: %v", sc.Text(), err)
		}
		return first
	}
	t.Fatalf("postgrey.db has no triplet %s -> %s:\n%s", x.Sender, x.Rcpt, out)
	return 0
}

// A bad input writes nothing: a dump cut short fails the whole import.
func TestImportPostgreyBadInputWritesNothing(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "triplets.txt")
	body := "VERSION=3\nformat=print\nHEADER=END\n 192.0.2.0/a@b.test/c@d.test\n 1796000000,1796000500\n 192.0.2.0/x@b.test/c@d.test\n"
	if err := os.WriteFile(bad, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	database := filepath.Join(dir, "mx.db")
	out, err := exec.Command(binary, "import", "postgrey", "--database", database, bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "DATA=END") {
		t.Fatalf("truncated dump: %v\n%s", err, out)
	}
	wantIn(t, mx(t, "greylist", "list", "--database", database), "STATE")
	if out := mx(t, "greylist", "list", "--database", database, "--format", "csv"); strings.Count(out, "\n") != 1 {
		t.Errorf("a failed import wrote rows:\n%s", out)
	}
}

// SQLgrey (Debian's) greylists on loopback, on its SQLite file and on
// PostgreSQL, with reconnect_delay 0 (its smallest: minutes) until it has a
// pending triplet, a from_awl and a domain_awl row; then its tables are
// imported.
func TestImportSQLgrey(t *testing.T) {
	postfixtest.Require(t, "sqlgrey")
	t.Parallel()
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			testImportSQLgrey(t, store)
		})
	}
}

func testImportSQLgrey(t *testing.T, store string) {
	dir, addr := ownedDir(t, "sqlgrey"), freeLoopback(t)
	source := filepath.Join(dir, "sqlgrey.db")
	target := filepath.Join(t.TempDir(), "mx.db")
	dbConf := "db_type = SQLite\ndb_name = " + source + "\n"
	if store == "postgres" {
		// mxpolicyd shares SQLgrey's database and leaves its tables alone.
		source = pgtest.New(t)
		target = source
		u, err := url.Parse(source)
		if err != nil {
			t.Fatal(err)
		}
		pass, _ := u.User.Password()
		dbConf = fmt.Sprintf("db_type = Pg\ndb_name = %s\ndb_host = %s\ndb_port = %s\ndb_user = %s\ndb_pass = %s\n",
			strings.TrimPrefix(u.Path, "/"), u.Hostname(), u.Port(), u.User.Username(), pass)
	}
	conf := filepath.Join(dir, "sqlgrey.conf")
	err := os.WriteFile(conf, []byte("conf_dir = "+dir+"\nuser = sqlgrey\ngroup = sqlgrey\ninet = "+addr+
		"\npidfile = "+filepath.Join(dir, "sqlgrey.pid")+"\nreconnect_delay = 0\n"+dbConf), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	sg := startAnchor(t, addr, sbin(t, "sqlgrey"), "-f", conf)
	alice := triplet{"192.0.2.10", "alice@a.test", "bob@b.test"}
	erin := triplet{"192.0.2.10", "erin@a.test", "bob@b.test"}   // with alice: a.test → domain_awl
	frank := triplet{"192.0.2.10", "frank@f.test", "bob@b.test"} // → from_awl
	pending := triplet{"198.51.100.20", "carol@c.test", "dan@d.test"}
	for _, x := range []triplet{alice, erin, frank} {
		sg.first(t, addr, x)
	}
	sent := sg.first(t, addr, pending)
	for _, x := range []triplet{alice, erin, frank} {
		sg.settle(t, addr, tripletReq(x))
	}
	sg.stop(t)
	first := sqlgreyFirst(t, source, pending)
	checkSeen(t, "sqlgrey", first, sent)

	args := []string{"import", "sqlgrey", "--database", target, source}
	wantIn(t, mx(t, args...), "read 0 passed and 1 pending triplets, 0 auto-whitelisted clients, 2 client/domain pairs",
		"loaded 1 of 1 triplets, 0 of 0 clients, 2 of 2 client/domain pairs")
	wantIn(t, mx(t, args...), "loaded 0 of 1 triplets, 0 of 0 clients, 0 of 2 client/domain pairs")
	// The pairs pass any sender of their domain, to any recipient, from the
	// client's network.
	checkAfterImport(t, target, []triplet{{"192.0.2.99", "zoe@a.test", "yan@b.test"},
		{"192.0.2.10", "frank@f.test", "xi@b.test"}}, pending, first,
		triplet{"192.0.2.10", "gina@g.test", "bob@b.test"})
}

// sqlgreyFirst reads x's first attempt from SQLgrey's connect table in
// source, read-only: on PostgreSQL a timestamp that NOW() wrote in the
// session's time zone, on SQLite Unix seconds (SQLgrey's past_tstamp).
func sqlgreyFirst(t *testing.T, source string, x triplet) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := dbtest.OpenReadOnly(t, source)
	name, domain, _ := strings.Cut(x.Sender, "@")
	var first int64
	var err error
	if d.IsPostgres() {
		err = d.PG.QueryRow(ctx, `SELECT floor(extract(epoch FROM first_seen::timestamptz))::bigint FROM connect
			WHERE sender_name = $1 AND sender_domain = $2 AND rcpt = $3`, name, domain, x.Rcpt).Scan(&first)
	} else {
		err = d.SQL.QueryRowContext(ctx, `SELECT CAST(first_seen AS INTEGER) FROM connect
			WHERE sender_name = ? AND sender_domain = ? AND rcpt = ?`, name, domain, x.Rcpt).Scan(&first)
	}
	if err != nil {
		t.Fatalf("sqlgrey connect row %s -> %s: %v", x.Sender, x.Rcpt, err)
	}
	return first
}
