package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// binary is the mxpolicyd under test, built once by TestMain (with -race
// when the tests run with it).
var binary string

func TestMain(m *testing.M) {
	if os.Getenv(postfixtest.OptOutEnv) == "0" && os.Getenv("CI") == "" {
		// Every test skips (postfixtest.Require says why); no build needed.
		os.Exit(m.Run())
	}
	var err error
	if binary, err = daemontest.Build(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	// pgtest.Main runs the tests and stops its PostgreSQL cluster, if it
	// started one (no TEST_DATABASE_URL), then exits.
	pgtest.Main(m)
}
