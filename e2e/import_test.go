package e2e

import (
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
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// importDelay is mxpolicyd's greylist.delay after an import: long enough
// that an imported pending triplet is still early once the import ran
// and the daemon started, short enough to wait out.
const importDelay = 10 * time.Second

const importConfig = baseConfig + "greylist:\n  delay: 10s\n"

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
	log  *daemontest.Buffer
	once sync.Once
}

func startAnchor(t *testing.T, addr string, prog string, args ...string) *anchor {
	t.Helper()
	a := &anchor{cmd: exec.Command(prog, args...), log: &daemontest.Buffer{}}
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

func (a *anchor) stop(t *testing.T) {
	a.once.Do(func() {
		// Its process group: Net::Server may have forked.
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = a.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			// Net::Server::Multiplex can sit in its select loop; what
			// both keep is committed (SQLgrey autocommits; postgrey's
			// environment is read with db_dump -h), so KILL loses nothing.
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Logf("%s did not stop within 5s of SIGTERM; killed", a.cmd.Path)
		}
	})
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

// tripletReq is one RCPT request; client_name=unknown as from a client
// without reverse DNS.
func tripletReq(client, sender, rcpt string) string {
	return faultRequest(client, sender, rcpt, "imp."+client+"."+rcpt)
}

// checkAfterImport starts mxpolicyd on database and checks that what the
// anchor passed passes at once, that the anchor's pending triplet passes
// after the rest of mxpolicyd's delay counted from its first attempt, and
// that a new triplet is greylisted.
func checkAfterImport(t *testing.T, database string, passes []string, pending string, pendingSince time.Time, fresh string) {
	t.Helper()
	d := startDaemon(t, daemontest.Options{Config: importConfig, Database: database})
	if strings.HasPrefix(database, "postgres") {
		d.WaitLog(t, "database ready") // until then greylisting fails open
	}
	for _, req := range passes {
		if a, _ := askOnce(t, d.Addr, req); deferral(a) {
			t.Errorf("imported pass deferred: %s\n%s", a, req)
		}
	}
	if a, _ := askOnce(t, d.Addr, fresh); !deferral(a) {
		t.Errorf("new triplet: %s, want a deferral", a)
	}
	a, _ := askOnce(t, d.Addr, pending)
	if time.Since(pendingSince) >= importDelay {
		t.Fatalf("the pending triplet was first seen %v ago, past the %v delay: inconclusive", time.Since(pendingSince), importDelay)
	}
	if !deferral(a) || !strings.Contains(a, "Greylisted") {
		t.Errorf("imported pending triplet before its delay: %s, want a deferral", a)
	}
	time.Sleep(time.Until(pendingSince.Add(importDelay + time.Second)))
	if a, _ := askOnce(t, d.Addr, pending); deferral(a) {
		t.Errorf("imported pending triplet after its delay: %s, want a pass", a)
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
	passed := tripletReq("192.0.2.10", "alice@a.test", "bob@b.test")
	pending := tripletReq("198.51.100.20", "carol@c.test", "dan@d.test")
	for _, req := range []string{passed, pending} {
		if a, _ := askOnce(t, addr, req); !deferral(a) {
			t.Fatalf("postgrey, first attempt: %s", a)
		}
	}
	pendingSince := time.Now().Add(-time.Second) // postgrey's seconds, rounded down
	time.Sleep(2100 * time.Millisecond)
	if a, _ := askOnce(t, addr, passed); !strings.HasPrefix(a, "PREPEND X-Greylist") {
		t.Fatalf("postgrey, retry after its delay: %s\n%s", a, pg.log)
	}
	pg.stop(t)
	files := []string{filepath.Join(dir, "postgrey.db"), filepath.Join(dir, "postgrey_clients.db")}

	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			database := filepath.Join(t.TempDir(), "mx.db")
			if store == "postgres" {
				database = pgtest.New(t)
			}
			args := append([]string{"import", "postgrey", "--database", database, "--delay", "1"}, files...)
			wantIn(t, mx(t, args...), "read 1 passed and 1 pending triplets, 1 auto-whitelisted clients",
				"loaded 2 of 2 triplets, 1 of 1 clients")
			wantIn(t, mx(t, args...), "loaded 0 of 2 triplets, 0 of 1 clients")
			checkAfterImport(t, database, []string{tripletReq("192.0.2.77", "alice@a.test", "bob@b.test")},
				pending, pendingSince, tripletReq("192.0.2.10", "erin@e.test", "bob@b.test"))
		})
	}
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
	alice := tripletReq("192.0.2.10", "alice@a.test", "bob@b.test")
	erin := tripletReq("192.0.2.10", "erin@a.test", "bob@b.test")   // with alice: a.test → domain_awl
	frank := tripletReq("192.0.2.10", "frank@f.test", "bob@b.test") // → from_awl
	pending := tripletReq("198.51.100.20", "carol@c.test", "dan@d.test")
	for _, req := range []string{alice, erin, frank, pending} {
		if a, _ := askOnce(t, addr, req); !deferral(strings.ToUpper(a)) {
			t.Fatalf("sqlgrey, first attempt: %s\n%s", a, sg.log)
		}
	}
	pendingSince := time.Now().Add(-time.Second)
	time.Sleep(2100 * time.Millisecond)
	for _, req := range []string{alice, erin, frank} {
		if a, _ := askOnce(t, addr, req); deferral(strings.ToUpper(a)) {
			t.Fatalf("sqlgrey, retry: %s\n%s", a, sg.log)
		}
	}
	sg.stop(t)

	args := []string{"import", "sqlgrey", "--database", target, source}
	wantIn(t, mx(t, args...), "read 0 passed and 1 pending triplets, 0 auto-whitelisted clients, 2 client/domain pairs",
		"loaded 1 of 1 triplets, 0 of 0 clients, 2 of 2 client/domain pairs")
	wantIn(t, mx(t, args...), "loaded 0 of 1 triplets, 0 of 0 clients, 0 of 2 client/domain pairs")
	// The pairs pass any sender of their domain, to any recipient, from the
	// client's network.
	checkAfterImport(t, target, []string{tripletReq("192.0.2.99", "zoe@a.test", "yan@b.test"),
		tripletReq("192.0.2.10", "frank@f.test", "xi@b.test")}, pending, pendingSince,
		tripletReq("192.0.2.10", "gina@g.test", "bob@b.test"))
}
