package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// diskFullConns and diskFullPerConn shape the load sent while the SQLite
// store's file system is full: enough new triplets (each a greylisting row
// and a decision-log row) that SQLite must grow its files.
const (
	diskFullConns   = 4
	diskFullPerConn = 75
)

// The embedded store's file system fills up: the zero-setup default keeps
// its SQLite file in /var/lib/mxpolicyd, on a disk other things fill. A
// write that needs a new page then fails with SQLITE_FULL. Every request is
// still answered in time, greylisting failing open (DUNNO, per on_error)
// where it cannot store, and once space is freed the store works again
// without a restart.
func TestFaultSQLiteDiskFull(t *testing.T) {
	postfixtest.Require(t) // root, for the mount
	t.Parallel()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount a 4 MiB tmpfs on %s: %v", dir, err)
	}
	// Registered before the daemon's own cleanup, so it runs after the
	// daemon has stopped.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	metrics, url := metricsConfig(t)
	d := startDaemon(t, daemontest.Options{Database: filepath.Join(dir, "mx.db"), Config: metrics + `
checks:
  spf:
    enabled: false
`})
	pc := dialPolicy(t, d.Addr)
	if action, took, err := pc.ask(faultRequest("192.0.2.40", "alice@sender.test", "before@example.test", "before")); err != nil || !strings.HasPrefix(action, "DEFER_IF_PERMIT") {
		t.Fatalf("a new triplet before the disk fills: %q, %v after %v; want the deferral", action, err, took)
	}

	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	actions, maxTook, errs := diskFullLoad(d.Addr)
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("disk full: %d requests over %d connections, actions %v, slowest %v", diskFullConns*diskFullPerConn, diskFullConns, actions, maxTook)
	if maxTook > requestBudget+replyGrace {
		t.Errorf("slowest reply took %v, want at most %v", maxTook, requestBudget+replyGrace)
	}
	if actions["DUNNO"] == 0 {
		t.Errorf("no request failed open with the store's disk full (%v): the fault was not reached", actions)
	}
	if n := metricSum(t, url, "mxpolicyd_check_errors_total", `check="greylist"`); n < float64(actions["DUNNO"]) {
		t.Errorf("mxpolicyd_check_errors_total{check=\"greylist\"} = %v, want one per request that failed open (%d)", n, actions["DUNNO"])
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// A checkpoint or a write of the decision log may take the first
	// moments of free space; greylisting stores again within them.
	freed := time.Now()
	deadline := freed.Add(10 * time.Second)
	for i := 0; ; i++ {
		action, took, err := pc.ask(faultRequest("192.0.2.40", "alice@sender.test", fmt.Sprintf("after%d@example.test", i), fmt.Sprintf("after.%d", i)))
		if err != nil {
			t.Fatalf("a new triplet after space was freed: %v after %v", err, took)
		}
		if strings.HasPrefix(action, "DEFER_IF_PERMIT") {
			t.Logf("space freed: greylisting stored the new triplet of request %d, %v later", i+1, time.Since(freed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new triplets still %q 10 s after space was freed: greylisting did not come back", action)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-d.Exited():
		t.Fatalf("mxpolicyd exited: %v", d.Cmd.ProcessState)
	default:
	}
}

// fill writes zeros to path until the file system has no room left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			return
		}
	}
}

// diskFullLoad sends new triplets over diskFullConns connections and
// returns how many got each action, the slowest reply and any failures.
func diskFullLoad(addr string) (map[string]int, time.Duration, []error) {
	var (
		mu      sync.Mutex
		actions = map[string]int{}
	)
	maxTook, errs := eachConn(diskFullConns, func(c int) (time.Duration, error) {
		pc, err := newPolicyConn(addr)
		if err != nil {
			return 0, err
		}
		defer pc.nc.Close()
		var maxTook time.Duration
		for i := range diskFullPerConn {
			req := faultRequest(fmt.Sprintf("198.51.100.%d", c+1), fmt.Sprintf("s%d@sender.test", i),
				fmt.Sprintf("full%d-%d@example.test", c, i), fmt.Sprintf("full.%d.%d", c, i))
			action, took, err := pc.ask(req)
			maxTook = max(maxTook, took)
			if err != nil {
				return maxTook, fmt.Errorf("connection %d, request %d: %v after %v", c, i, err, took)
			}
			if action != "DUNNO" && !strings.HasPrefix(action, "DEFER_IF_PERMIT") {
				return maxTook, fmt.Errorf("connection %d, request %d: action %q, want the deferral or DUNNO", c, i, action)
			}
			mu.Lock()
			actions[strings.Fields(action)[0]]++
			mu.Unlock()
		}
		return maxTook, nil
	})
	return actions, maxTook, errs
}
