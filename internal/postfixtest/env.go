package postfixtest

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// OptOutEnv names the variable that, set to "0", skips the end-to-end tests
// for a quick local run. It is refused under CI: there a missing Postfix
// must fail the build, never hide as a skip.
const OptOutEnv = "MXPOLICYD_E2E"

// Require fails the test unless it runs as root and every named program is
// installed. It skips only when the developer opted out explicitly with
// MXPOLICYD_E2E=0 outside CI.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	if OptedOut(t) {
		t.Skipf("end-to-end test skipped: %s=0", OptOutEnv)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("postfixtest: end-to-end tests need root (Postfix's master runs as root); run scripts/test.sh as root, or set %s=0 to skip them locally", OptOutEnv)
	}
	for _, prog := range programs {
		if _, err := lookPath(prog); err != nil {
			t.Fatalf("postfixtest: %s not installed (%v); run scripts/install-test-deps.sh, or set %s=0 to skip end-to-end tests locally", prog, err, OptOutEnv)
		}
	}
}

// OptedOut reports whether MXPOLICYD_E2E=0 asks to skip end-to-end tests;
// it fails the test if that is set under CI.
func OptedOut(t testing.TB) bool {
	t.Helper()
	if os.Getenv(OptOutEnv) != "0" {
		return false
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("postfixtest: %s=0 is not allowed when CI is set: CI must run the end-to-end tests", OptOutEnv)
	}
	return true
}

// lookPath also searches the sbin directories, which a non-login root
// shell may lack in PATH (postfix, clamd live there).
func lookPath(prog string) (string, error) {
	if p, err := exec.LookPath(prog); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + prog
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(prog)
}

func mustLookPath(t testing.TB, prog string) string {
	t.Helper()
	p, err := lookPath(prog)
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	return p
}

// TempDir makes a world-traversable directory directly under os.TempDir.
// t.TempDir will not do: its parent is mode 0700, which the postfix and
// clamav users cannot enter, and its long path can overflow the 108-byte
// limit on unix socket names. A $TMPDIR those users cannot reach is
// passed over for /tmp. The caller removes it.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	base := os.TempDir()
	if !traversable(base) {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "mxp-"+prefix+"-")
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	return dir
}

// traversable reports whether every directory from dir up to / lets
// others through (mode o+x).
func traversable(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func postfixIDs(t testing.TB) (uid, gid int) {
	t.Helper()
	return userIDs(t, "postfix")
}

func userIDs(t testing.TB, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("postfixtest: user %s: %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

func chown(t testing.TB, path string, uid, gid int) {
	t.Helper()
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
}
