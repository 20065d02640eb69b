package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// cluster is a throwaway PostgreSQL instance in a temp dir.
type cluster struct {
	dir    string // holds data/, sock/ and log
	bindir string
	asUser string // "postgres" when we run as root (initdb refuses root)
	dsn    string
	port   int
	opts   string // postgres command-line settings, port included, reused by restarts
}

// startCluster runs initdb and pg_ctl start. Durability is off (fsync,
// full_page_writes, synchronous_commit): the data dies with the tests, and
// it makes CREATE DATABASE per test cheap.
func startCluster() (*cluster, error) {
	c, err := newCluster()
	if err != nil {
		return nil, err
	}
	if err := c.initAndStart("-c synchronous_commit=off"); err != nil {
		c.removeDir()
		return nil, err
	}
	return c, nil
}

// newCluster makes the directory of a cluster and picks its port; nothing
// runs yet.
func newCluster() (*cluster, error) {
	bindir, err := findBindir()
	if err != nil {
		return nil, err
	}
	c := &cluster{bindir: bindir}
	if os.Geteuid() == 0 {
		c.asUser = "postgres"
	}
	if c.dir, err = os.MkdirTemp("", "mxpolicyd-pgtest-"); err != nil {
		return nil, err
	}
	if err := c.prepareDir(); err != nil {
		c.removeDir()
		return nil, err
	}
	if c.port, err = FreePort(); err != nil {
		c.removeDir()
		return nil, err
	}
	c.opts = fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off "+
		"-c full_page_writes=off -c max_connections=200", c.port, filepath.Join(c.dir, "sock"))
	c.dsn = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	return c, nil
}

func (c *cluster) prepareDir() error {
	if err := os.Mkdir(filepath.Join(c.dir, "sock"), 0o700); err != nil {
		return err
	}
	if c.asUser == "" {
		return nil
	}
	_, err := giveTo(c.dir, c.asUser)
	return err
}

// giveTo makes dir and everything in it name's, and returns the
// credential that runs a process as name: as root, initdb, the server and
// pgbouncer run as the postgres user, since each refuses root.
func giveTo(dir, name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL's programs must run as the %q user, which does not exist "+
			"(install the Debian package postgresql, or set TEST_DATABASE_URL): %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, err
}

// initAndStart runs initdb, then starts the cluster with extra settings
// added to c.opts.
func (c *cluster) initAndStart(extra string) error {
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-sync", "--no-locale"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	c.opts += " " + extra
	return c.start()
}

// start runs pg_ctl start on c's data directory and port.
func (c *cluster) start() error {
	if out, err := c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"),
		"-o", c.opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return nil
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }

// stop shuts the cluster down fast and removes its directory.
func (c *cluster) stop() error {
	out, err := c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
	c.removeDir()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

func (c *cluster) removeDir() { _ = os.RemoveAll(c.dir) }

// run executes a PostgreSQL binary, as c.asUser when set.
func (c *cluster) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bindir, prog)
	var cmd *exec.Cmd
	if c.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir // runuser's user must be able to stat the cwd
	return cmd.CombinedOutput()
}

// findBindir locates initdb: pg_config --bindir, then Debian's versioned
// directories (newest first), then PATH.
func findBindir() (string, error) {
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(debian, func(i, j int) bool { return versionOf(debian[i]) > versionOf(debian[j]) })
	candidates = append(candidates, debian...)
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH); " +
		"install the Debian package postgresql or set TEST_DATABASE_URL")
}

func versionOf(bindir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return n
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// FreePort asks the kernel for an unused loopback port. Another process
// could take it before postgres binds; pg_ctl start then fails loudly, not
// silently. Nothing listens on it until then: a connection is refused.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
