package main

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/metrics"
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
	next.DecisionLog.BatchSize = 7
	next.Hostname = "mx2.example"
	next.AutoMigrate = !running.AutoMigrate
	got := restartKeys(&running, &next)
	want := []string{"listen", "socket_mode", "max_line_bytes", "database", "auto_migrate", "log.level",
		"hostname", "metrics.listen", "decision_log.batch_size"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restartKeys = %v, want %v", got, want)
	}
	if got := restartKeys(&running, &running); len(got) != 0 {
		t.Errorf("no change, restartKeys = %v", got)
	}

	// What the reload then runs with: the running value of each of those,
	// the file's of the rest (decision_log.retention is gc's, which a
	// reload does apply).
	keepRunning(&running, &next)
	if got := restartKeys(&running, &next); len(got) != 0 {
		t.Errorf("after keepRunning, restartKeys = %v", got)
	}
	got = changedKeys(reflect.ValueOf(running), reflect.ValueOf(next), "")
	want = []string{"request_timeout", "observe", "greylist.delay", "decision_log.retention", "gc.interval"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after keepRunning, the changed keys are %v, want %v", got, want)
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

// A reload that names hostname among the keys needing a restart keeps
// the running name in what the checks write, Received-SPF's receiver
// here, as it stays in the decision log's rows.
func TestReloadKeepsHostname(t *testing.T) {
	dns := dnstest.New(t,
		"example.org. 3600 IN SOA ns.example.org. host.example.org. 1 3600 600 86400 120",
		`example.org. 300 IN TXT "v=spf1 ?all"`)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	write := func(host string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("hostname: "+host+"\ndns: {server: \""+dns.Addr()+"\"}\n"+
			"checks: {greylist: {enabled: false}}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	override := func(c *config.Config) { c.Database = filepath.Join(dir, "mx.db") }
	write("old.example")
	cfg, err := config.Load(path, checkDefaults(), override)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, ln, logs := serveInProcess(t, cfg)
	ask := func() string {
		c := newClient(t, ln.Addr().String())
		c.send("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\n" +
			"client_name=mail.example.org\nhelo_name=mail.example.org\nsender=alice@example.org\n" +
			"recipient=bob@example.net\ninstance=1\n\n")
		return c.reply(0)
	}
	if got := ask(); !strings.Contains(got, "receiver=old.example") {
		t.Fatalf("before the reload: %q", got)
	}
	write("new.example")
	d.reload(ctx, path, override)
	if !strings.Contains(logs.String(), "keys=hostname") {
		t.Fatalf("no restart warning naming hostname:\n%s", logs.String())
	}
	if got := ask(); !strings.Contains(got, "receiver=old.example") {
		t.Errorf("after a reload that kept hostname: %q", got)
	}
}

// A SIGHUP during shutdown: the reload and close take turns (run with
// -race, which saw both touch the DNS lists' probe), and a reload after
// close builds nothing.
func TestReloadDuringClose(t *testing.T) {
	dns := dnstest.New(t, "test. 3600 IN SOA ns.test. host.test. 1 3600 600 86400 120")
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("dns: {server: \""+dns.Addr()+"\"}\ndnsbl: {lists: [{site: good.test}]}\n"+
		"checks: {spf: {enabled: false}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	override := func(c *config.Config) { c.Database = filepath.Join(dir, "mx.db") }
	cfg, err := config.Load(path, checkDefaults(), override)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &logtest.Buffer{}
	d, err := openDaemon(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cancel() // SIGTERM
	done := make(chan struct{})
	go func() { defer close(done); d.reload(ctx, path, override) }() // SIGHUP
	d.close()
	<-done
	before := strings.Count(logs.String(), "config reloaded")
	d.reload(ctx, path, override)
	if after := strings.Count(logs.String(), "config reloaded"); after != before {
		t.Errorf("a reload after close reloaded: %s", logs.String())
	}
}

// A reload that fails keeps the running resolver, and so must its gauge:
// the new resolver, built and dropped, reported itself healthy.
func TestFailedReloadKeepsResolverGauge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	good := "dns: {server: \"" + dnstest.ClosedAddr(t) + "\"}\nchecks: {greylist: {enabled: false}}\n"
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	override := func(c *config.Config) { c.Database = filepath.Join(dir, "mx.db") }
	cfg, err := config.Load(path, checkDefaults(), override)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, ln, logs := serveInProcess(t, cfg)
	for range 3 { // three queries refused in a row: unhealthy
		c := newClient(t, ln.Addr().String())
		c.send("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\n" +
			"helo_name=mail.example.org\nsender=alice@example.org\nrecipient=bob@example.net\ninstance=1\n\n")
		c.reply(0)
	}
	gauge := func() string {
		rec := httptest.NewRecorder()
		metrics.NewServer(metrics.Config{}, d.metrics, nil, nil).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for l := range strings.SplitSeq(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, "mxpolicyd_resolver_healthy ") {
				return l
			}
		}
		return "no mxpolicyd_resolver_healthy"
	}
	if g := gauge(); g != "mxpolicyd_resolver_healthy 0" {
		t.Fatalf("resolver refusing every query: %q, want 0", g)
	}
	bad := good + "whitelist: {clients_files: [\"" + filepath.Join(dir, "missing") + "\"]}\n"
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	d.reload(ctx, path, override)
	if !strings.Contains(logs.String(), "reload failed, keeping the running config") {
		t.Fatalf("the reload did not fail:\n%s", logs.String())
	}
	if g := gauge(); g != "mxpolicyd_resolver_healthy 0" {
		t.Errorf("after a failed reload: %q, want still 0", g)
	}
}

// serveInProcess runs the daemon cfg describes in this process, serving
// the policy protocol on a loopback listener, its log in the buffer
// returned; both stop when the test ends.
func serveInProcess(t *testing.T, cfg *config.Config) (*daemon, net.Listener, *logtest.Buffer) {
	t.Helper()
	logs := &logtest.Buffer{}
	d, err := openDaemon(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	srv, ln := serveLoopback(t, d)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return d, ln, logs
}

// changedKeys, for the tests, walks two values of one struct type by their yaml names and
// returns the dotted key of each field that differs. Values are compared
// as parsed at load, so "0660" and "660" are the same socket_mode; a
// struct that reads itself from text (policy.Action) is one value.
func changedKeys(a, b reflect.Value, prefix string) []string {
	var out []string
	eachKey(a, b, prefix, func(k string, a, b reflect.Value) {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			out = append(out, k)
		}
	})
	return out
}
