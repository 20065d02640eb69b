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

// withoutGreylist turns greylisting off, so that the check under test alone
// decides the reply.
const withoutGreylist = `
checks:
  greylist:
    enabled: false
`

// startBehindPostfix runs the daemon with config and greylisting off, and a
// Postfix whose smtpd_recipient_restrictions ask it.
func startBehindPostfix(t *testing.T, config string) (*daemontest.Daemon, *postfixtest.Postfix) {
	t.Helper()
	d := startDaemon(t, daemontest.Options{Config: config + withoutGreylist})
	return d, postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr})
}

// rcptAt sends one mail from client, which says helo, through pf and quits
// after RCPT TO, where the policy reply is given.
func rcptAt(t *testing.T, pf *postfixtest.Postfix, client, helo, from, to string) *postfixtest.Result {
	t.Helper()
	return pf.Swaks(t, postfixtest.Mail{From: from, To: []string{to},
		ClientAddr: client, Helo: helo, QuitAfter: "RCPT"})
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
