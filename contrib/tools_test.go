package contrib

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// need returns the path of a tool the checks run. A missing tool fails the
// test, never skips it: a check that does not run checks nothing.
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found (apt-get install %s): this check cannot run without it", tool, pkg)
	}
	return p
}

// run runs a command with a deadline and returns stdout and stderr.
func run(t *testing.T, name string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte(readFile(t, src)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
	binOut    string
)

// mxpolicyd builds the daemon once per test run, so the command lines in
// the contrib files are checked against the real CLI.
func mxpolicyd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "contrib-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mxpolicyd")
		// go test puts its GOROOT/bin first in the test's PATH, so "go"
		// is the toolchain running the test (Go 1.19 release notes, "Go
		// command").
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/mxpolicyd").CombinedOutput()
		binOut, binErr = string(out), err
	})
	if binErr != nil {
		t.Fatalf("building mxpolicyd: %v\n%s", binErr, binOut)
	}
	return binPath
}

// checkCommand runs an mxpolicyd command line from a contrib file with
// --help appended: cobra then parses the subcommand and every flag, and
// fails on one that does not exist, without starting anything.
func checkCommand(t *testing.T, where string, argv []string) {
	t.Helper()
	bin := mxpolicyd(t)
	if len(argv) == 0 || filepath.Base(argv[0]) != "mxpolicyd" {
		t.Fatalf("%s: command %q does not run mxpolicyd", where, argv)
	}
	args := append(append([]string{}, argv[1:]...), "--help")
	if _, stderr, err := run(t, bin, args...); err != nil {
		t.Errorf("%s: mxpolicyd rejects %q: %v\n%s", where, strings.Join(argv, " "), err, stderr)
	}
}
