package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// binary is the mxpolicyd under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv(postfixtest.OptOutEnv) == "0" && os.Getenv("CI") == "" {
		// Every test skips (postfixtest.Require says why); no build needed.
		os.Exit(m.Run())
	}
	var err error
	if binary, err = build(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	// pgtest.Main runs the tests and stops its PostgreSQL cluster, if it
	// started one (no TEST_DATABASE_URL), then exits.
	pgtest.Main(m)
}

// build compiles cmd/mxpolicyd, with -race when the tests run with it. The
// binary goes beside the test binary when that lives in go test's work
// directory, which go test removes afterwards (pgtest.Main exits, so no
// deferred cleanup would run here).
func build() (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mxpolicyd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/mxpolicyd/mxpolicyd/cmd/mxpolicyd")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/mxpolicyd: %v\n%s", err, out)
	}
	return bin, nil
}

func binDir() (string, error) {
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return filepath.Dir(exe), nil
	}
	return os.MkdirTemp("", "mxp-e2e-bin-")
}
