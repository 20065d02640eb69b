package daemontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles cmd/mxpolicyd once for a test binary's TestMain, with
// -race when the tests run with it, so races under the tests' traffic fail
// the run too. The binary goes beside the test binary when that lives in
// go test's work directory, which go test removes afterwards (a TestMain
// that ends in os.Exit runs no deferred cleanup); otherwise into a new
// temporary directory.
func Build() (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mxpolicyd")
	args := []string{"build", "-o", bin}
	if Race {
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
	return os.MkdirTemp("", "mxp-bin-")
}
