package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// greylistRequest is one RCPT request from client for rcpt.
func greylistRequest(rcpt string) string {
	return "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\n" +
		"client_name=mail.example.org\nhelo_name=mail.example.org\nsender=alice@example.org\n" +
		"recipient=" + rcpt + "\ninstance=" + rcpt + "\n\n"
}

// ask sends one request on a new connection and returns the action line.
func ask(t *testing.T, addr, rcpt string) string {
	t.Helper()
	c := newClient(t, addr)
	c.send(greylistRequest(rcpt))
	return c.reply(0)
}

func readyzOf(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls /readyz until it answers 200: the connector retries on
// its own schedule, so the test waits for the state, not for a time.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if code, _ := readyzOf(t, addr); code == http.StatusOK {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("/readyz never answered 200")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serve started while its PostgreSQL is down listens at once, answers
// every request DUNNO without waiting (greylisting fails open), and says
// so on /readyz; when the server comes up, greylisting works without a
// restart.
func TestServeStartsWithPostgresDown(t *testing.T) {
	srv := pgtest.StartServer(t)
	dsn := srv.CreateDatabase(t, "mx")
	srv.Stop(t)
	maddr := daemontest.FreeAddr(t)
	d := startDaemon(t, "--config", "testdata/nodns.yaml", "--database", dsn, "--metrics-listen", maddr)
	for i := range 3 {
		if got := ask(t, d.Addr, fmt.Sprintf("down%d@example.net", i)); got != "action=DUNNO" {
			t.Fatalf("request %d with the database down: %q, want action=DUNNO", i, got)
		}
	}
	if code, body := readyzOf(t, maddr); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "database not reachable") {
		t.Fatalf("/readyz with the database down: %d %q", code, body)
	}
	srv.Start(t)
	waitReady(t, maddr)
	if got := ask(t, d.Addr, "up@example.net"); !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
		t.Fatalf("a new triplet once the database is up: %q, want a deferral", got)
	}
	if n := strings.Count(d.Log.String(), "database not reachable; greylisting"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	if strings.Count(d.Log.String(), "database ready") != 1 {
		t.Errorf("recovery not logged once:\n%s", d.Log.String())
	}
}

// A triplet greylisted before the daemon is killed with SIGKILL is known
// after a restart on the same database: the retry is "early retry", not a
// "new triplet" again.
func TestGreylistSurvivesKill(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		testGreylistSurvivesKill(t, filepath.Join(t.TempDir(), "mx.db"), false)
	})
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.StartServer(t)
		testGreylistSurvivesKill(t, srv.CreateDatabase(t, "mx"), true)
	})
}

func testGreylistSurvivesKill(t *testing.T, database string, pg bool) {
	args := []string{"--config", "testdata/nodns.yaml", "--database", database}
	start := func() *daemontest.Daemon {
		d := startDaemon(t, args...)
		if pg { // serve listens before PostgreSQL is reached
			d.WaitLog(t, "database ready")
		}
		return d
	}
	d := start()
	if got := ask(t, d.Addr, "bob@example.net"); !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
		t.Fatalf("first attempt: %q, want a deferral", got)
	}
	d.WaitLog(t, `"reason":"new triplet"`)
	d.Kill(t)
	d = start()
	if got := ask(t, d.Addr, "bob@example.net"); !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
		t.Fatalf("retry after the restart: %q, want a deferral", got)
	}
	d.WaitLog(t, `"reason":"early retry"`)
	if strings.Contains(d.Log.String(), `"reason":"new triplet"`) {
		t.Fatalf("the triplet was new again after SIGKILL:\n%s", d.Log.String())
	}
}
