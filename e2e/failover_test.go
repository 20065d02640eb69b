package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// detectionDelay stands in for the time a failover manager (Patroni,
// pg_auto_failover) takes to declare the primary dead before it promotes
// the standby; the daemon must answer, open, all along.
const detectionDelay = 3 * time.Second

// A primary and its streaming hot standby; the daemon's DSN names both,
// with target_session_attrs=read-write so it only ever writes to the one
// that accepts writes (PostgreSQL documentation, libpq "Connection
// Strings", "Specifying Multiple Hosts"). The primary crashes, the
// standby is promoted: greylisting goes on against the new primary
// without restarting the daemon, and a triplet first seen on the old
// primary passes on its retry on the new one.
func TestPostgresFailover(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	primary := pgtest.StartServer(t)
	primary.CreateDatabase(t, "mxpolicyd")
	standby := primary.StartStandby(t)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/mxpolicyd?target_session_attrs=read-write&sslmode=disable",
		primary.Port, standby.Port)
	d := startDaemonReady(t, outageConfig, dsn)

	passed := triplet{"192.0.2.10", "old@passed.test", "passed@example.test"}
	passGreylist(t, d, passed)
	pending := triplet{"192.0.2.20", "new@pending.test", "pending@example.test"}
	pendingSeen := time.Now()
	expect(t, d.Addr, pending, verbDefer)
	standby.WaitReplayed(t, primary, resumeLimit)
	reportFrom(t, d, standby.DSN("mxpolicyd"))

	l := startLoad(t, d.Addr, loadOptions{Triplet: freshTriplets("failover")})
	l.WaitFor(t, verbDefer, 0, resumeLimit)
	primary.Stop(t)
	down := l.Since()
	time.Sleep(detectionDelay)
	r := recoverUnderLoad(t, l, down, func() { standby.Promote(t) })
	window := r.s.Between(down, r.resumed.Done())
	t.Logf("figures: greylisting resumed %v after promotion; %d fail-open answers in the %v between the crash and the first deferral; load %v",
		(r.resumed.Done() - r.ready).Round(time.Millisecond), window.ByVerb[verbDunno],
		(r.resumed.Done() - down).Round(time.Millisecond), r.s)

	time.Sleep(time.Until(pendingSeen.Add(time.Second + 100*time.Millisecond)))
	expectGreylistPass(t, d, pending, 2)
	expectGreylistPass(t, d, passed, 3)
	expect(t, d.Addr, triplet{"192.0.2.30", "after@failover.test", "after@example.test"}, verbDefer)
}

// reportFrom runs "mxpolicyd report" against database, as an admin
// would point it at a read-only hot standby: reports only read.
func reportFrom(t *testing.T, d *daemontest.Daemon, database string) {
	t.Helper()
	cmd := exec.Command(binary, "--config", filepath.Join(d.Dir, "mxpolicyd.yaml"), "report",
		"--database", database, "--since", "1d")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("mxpolicyd report from the standby: %v\n%s", err, out)
	}
}
