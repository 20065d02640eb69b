package e2e

import (
	"os"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// startDaemon runs the built binary with opt (internal/daemontest) in a
// directory the postfix user can traverse, since Postfix connects to the
// unix sockets and reads the files the tests put there.
func startDaemon(t *testing.T, opt daemontest.Options) *daemontest.Daemon {
	t.Helper()
	opt.Dir = postfixtest.TempDir(t, "mxpd")
	t.Cleanup(func() { os.RemoveAll(opt.Dir) })
	return daemontest.Start(t, binary, opt)
}

// eachStore runs test in parallel subtests against the embedded SQLite
// store (database "": the daemon's own file) and a fresh PostgreSQL
// database.
func eachStore(t *testing.T, test func(t *testing.T, database string)) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			database := ""
			if store == "postgres" {
				database = pgtest.New(t)
			}
			test(t, database)
		})
	}
}
