package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
)

func TestRestartKeys(t *testing.T) {
	running := config.Default(checkDefaults())
	next := config.Default(checkDefaults())
	next.Listen = []string{"127.0.0.1:10041"}
	next.SocketMode = 0o600 // top-level keys, inlined from policy.ServerConfig
	next.MaxLine = 4096
	next.Database = "postgres://mx:s3cret@db/mx"
	next.Metrics.Listen = "127.0.0.1:9100"
	next.Log.Level = config.Level(slog.LevelDebug)
	next.DecisionLog.Retention = 90 * 24 * time.Hour
	next.Observe = !running.Observe        // reloadable
	next.GC.Interval = time.Hour           // reloadable
	next.Greylist.Delay = 10 * time.Minute // reloadable
	next.RequestTimeout = 4 * time.Second  // reloadable
	got := restartKeys(&running, &next)
	want := []string{"listen", "socket_mode", "max_line_bytes", "database", "log.level", "metrics.listen", "decision_log.retention"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restartKeys = %v, want %v", got, want)
	}
	if got := restartKeys(&running, &running); len(got) != 0 {
		t.Errorf("no change, restartKeys = %v", got)
	}
}

// SIGHUP with keys it cannot apply warns once, naming them, and keeps
// serving. (serve's --listen and --database flags win over the file, so
// the harness's daemon cannot see those two change.)
func TestReloadWarnsAboutRestartKeys(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("checks: {spf: {enabled: false}}\n"), 0o644)
	d := startDaemon(t, "--config", cfg)
	os.WriteFile(cfg, []byte("checks: {spf: {enabled: false}}\nmax_connections: 5\n"+
		"metrics: {listen: \"127.0.0.1:1\"}\n"), 0o644)
	d.Cmd.Process.Signal(hangup)
	d.WaitLog(t, "config reloaded")
	log := d.Log.String()
	if n := strings.Count(log, `need a restart; running with the old values","keys":"max_connections,metrics.listen"`); n != 1 {
		t.Errorf("%d restart warnings naming max_connections,metrics.listen, want 1:\n%s", n, log)
	}
	if got := ask(t, d.Addr, "bob@example.net"); !strings.HasPrefix(got, "action=") {
		t.Errorf("after reload: %q", got)
	}
}
