package e2e

import (
	"os"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
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
