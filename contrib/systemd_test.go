package contrib

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const installedBin = "/usr/local/bin/mxpolicyd"

var unitFiles = []string{
	"systemd/mxpolicyd.service",
	"systemd/mxpolicyd-gc.service",
	"systemd/mxpolicyd-gc.timer",
	"systemd/mxpolicyd.service.d/postfix-socket.conf",
}

// TestSystemdVerify runs systemd-analyze verify on the units and the
// drop-in. verify insists that ExecStart's binary exists, so the copies
// point at a stub instead of /usr/local/bin/mxpolicyd; nothing else is
// changed. verify only warns about unknown keys, so any output fails.
func TestSystemdVerify(t *testing.T) {
	bin := need(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	stub := filepath.Join(dir, "bin", "mxpolicyd")
	if err := os.MkdirAll(filepath.Dir(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, f := range unitFiles {
		dst := filepath.Join(dir, strings.TrimPrefix(f, "systemd/"))
		text := strings.ReplaceAll(readFile(t, f), installedBin, stub)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(f, ".conf") { // drop-ins load with their unit
			units = append(units, dst)
		}
	}
	stdout, stderr, err := run(t, bin, append([]string{"verify", "--man=no"}, units...)...)
	if err != nil || stdout != "" || stderr != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s%s", err, stdout, stderr)
	}
}

// hardening is the sandbox both services must keep; verify accepts a
// unit without it, so it is asserted here.
var hardening = map[string]string{
	"User":                    "mxpolicyd",
	"NoNewPrivileges":         "yes",
	"ProtectSystem":           "strict",
	"ProtectHome":             "yes",
	"PrivateTmp":              "yes",
	"StateDirectory":          "mxpolicyd",
	"CapabilityBoundingSet":   "",
	"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}

func loadUnit(t *testing.T, path string) unit {
	t.Helper()
	u, err := parseUnit(path)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSystemdHardening(t *testing.T) {
	for _, f := range []string{"systemd/mxpolicyd.service", "systemd/mxpolicyd-gc.service"} {
		u := loadUnit(t, f)
		for k, want := range hardening {
			if _, ok := u["Service"][k]; !ok {
				t.Errorf("%s: %s missing", f, k)
			} else if got := u.get("Service", k); got != want {
				t.Errorf("%s: %s=%s, want %q", f, k, got, want)
			}
		}
		if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
			t.Errorf("%s: SystemCallFilter=@system-service missing", f)
		}
	}
	s := loadUnit(t, "systemd/mxpolicyd.service")
	for k, want := range map[string]string{
		"Type":             "notify", // serve sends READY=1 (cmd/mxpolicyd/startup_test.go)
		"NotifyAccess":     "main",
		"TimeoutStartSec":  "infinity", // a long SQLite migration must finish
		"Restart":          "on-failure",
		"ExecReload":       "/bin/kill -HUP $MAINPID",
		"RuntimeDirectory": "mxpolicyd",
	} {
		if got := s.get("Service", k); got != want {
			t.Errorf("mxpolicyd.service: %s=%q, want %q", k, got, want)
		}
	}
	if got := loadUnit(t, "systemd/mxpolicyd-gc.service").get("Service", "Type"); got != "oneshot" {
		t.Errorf("mxpolicyd-gc.service: Type=%q, want oneshot", got)
	}
	tm := loadUnit(t, "systemd/mxpolicyd-gc.timer")
	for k, want := range map[string]string{"OnCalendar": "hourly", "Persistent": "true"} {
		if got := tm.get("Timer", k); got != want {
			t.Errorf("mxpolicyd-gc.timer: %s=%q, want %q", k, got, want)
		}
	}
	if tm.get("Timer", "RandomizedDelaySec") == "" {
		t.Error("mxpolicyd-gc.timer: RandomizedDelaySec missing: MX hosts sharing a store would run gc together")
	}
}

// TestSystemdCommands checks ExecStart against the real CLI, and that cron
// runs the same gc command as the timer.
func TestSystemdCommands(t *testing.T) {
	serve := loadUnit(t, "systemd/mxpolicyd.service").get("Service", "ExecStart")
	gc := loadUnit(t, "systemd/mxpolicyd-gc.service").get("Service", "ExecStart")
	for _, c := range []string{serve, gc} {
		if !strings.HasPrefix(c, installedBin+" ") {
			t.Errorf("ExecStart %q: want %s", c, installedBin)
		}
		checkCommand(t, "systemd", strings.Fields(c))
	}
	if cron := cronEntries(t)[0].command; cron != gc {
		t.Errorf("cron runs %q, the timer %q", cron, gc)
	}
}

// TestSysusers creates the user in a scratch root with systemd-sysusers,
// and checks it is the user the units and the cron job run as.
func TestSysusers(t *testing.T) {
	bin := need(t, "systemd-sysusers", "systemd")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf, _ := filepath.Abs("systemd/mxpolicyd.sysusers.conf")
	if _, stderr, err := run(t, bin, "--root="+root, conf); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, stderr)
	}
	passwd := readFile(t, filepath.Join(root, "etc/passwd"))
	user := loadUnit(t, "systemd/mxpolicyd.service").get("Service", "User")
	if !strings.Contains(passwd, user+":x:") || !strings.Contains(passwd, ":/var/lib/mxpolicyd:") {
		t.Errorf("sysusers did not create %s with home /var/lib/mxpolicyd:\n%s", user, passwd)
	}
	if got := cronEntries(t)[0].user; got != user {
		t.Errorf("cron runs as %q, systemd as %q", got, user)
	}
}
