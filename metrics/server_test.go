package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestScrapeAfterDecisions(t *testing.T) {
	m := New()
	ts := httptest.NewServer(NewServer(DefaultConfig(), m, nil, nil).Handler())
	defer ts.Close()
	for _, d := range sampleDecisions(t)[:2] {
		m.Record(d)
	}
	want := decisionsHead + `
mxpolicyd_decisions_total{action="reject",check="dnsbl",mode="enforce",reason="listed zen.spamhaus.org"} 1
mxpolicyd_decisions_total{action="reject",check="spf",mode="enforce",reason="fail"} 1
`
	if err := testutil.ScrapeAndCompare(ts.URL+"/metrics", strings.NewReader(want), "mxpolicyd_decisions_total"); err != nil {
		t.Fatal(err)
	}
	// The runtime collectors are part of the exposition.
	if _, body := get(t, ts.URL+"/metrics"); !strings.Contains(body, "go_goroutines") ||
		!strings.Contains(body, "process_start_time_seconds") {
		t.Error("exposition lacks the Go or process collector")
	}
	if code, _ := get(t, ts.URL+"/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

func TestCustomPath(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = "/prom"
	ts := httptest.NewServer(NewServer(cfg, New(), nil, nil).Handler())
	defer ts.Close()
	if code, body := get(t, ts.URL+"/prom"); code != 200 || !strings.Contains(body, "mxpolicyd_connections_open") {
		t.Errorf("/prom: %d %q", code, body)
	}
	if code, _ := get(t, ts.URL+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics with path /prom: %d, want 404", code)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	pingErr := errors.New("dial tcp 10.0.0.5:5432: connect: connection refused")
	var failing atomic.Bool
	ping := func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("ping called without a deadline")
		}
		if failing.Load() {
			return pingErr
		}
		return nil
	}
	m := New()
	ts := httptest.NewServer(NewServer(DefaultConfig(), m, ping, nil).Handler())
	defer ts.Close()

	if code, body := get(t, ts.URL+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("readyz with store up: %d %q", code, body)
	}
	failing.Store(true)
	code, body := get(t, ts.URL+"/readyz")
	if code != http.StatusServiceUnavailable || body != "not ready: store unreachable\n" {
		t.Errorf("readyz with store down: %d %q", code, body)
	}
	if strings.Contains(body, "10.0.0.5") {
		t.Error("readyz leaks the store error to HTTP")
	}
	if code, body := get(t, ts.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz with store down: %d %q (the process is alive)", code, body)
	}
	if got := testutil.ToFloat64(m.storeErrors.WithLabelValues("ping")); got != 1 {
		t.Errorf("store_errors_total{op=ping} = %v, want 1", got)
	}
	pingErr = fmt.Errorf("connecting to 10.0.0.5: %w", reasonErr("migrations pending"))
	if code, body := get(t, ts.URL+"/readyz"); code != http.StatusServiceUnavailable ||
		body != "not ready: migrations pending\n" {
		t.Errorf("readyz with a reason: %d %q", code, body)
	}
}

// reasonErr is an error that says why in words fit for /readyz, as
// internal/db's readiness errors do.
type reasonErr string

func (e reasonErr) Error() string  { return "db: " + string(e) }
func (e reasonErr) Reason() string { return string(e) }

func TestServeShutsDownOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := NewServer(DefaultConfig(), New(), nil, nil)
	go func() { done <- s.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	if code, _ := get(t, url+"/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestListenAndServeReportsBusyAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := NewServer(Config{Listen: busy.Addr().String(), Path: "/metrics"}, New(), nil, nil)
	err = s.ListenAndServe(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Fatalf("err = %v, want a metrics: error", err)
	}
}
