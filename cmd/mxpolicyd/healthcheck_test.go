package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/config"
)

func TestHealthcheck(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sock := filepath.Join(t.TempDir(), "policy")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	ready := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(ready)
	}))
	defer srv.Close()

	cfg := config.Default(checkDefaults())
	cfg.Listen = []string{tcp.Addr().String(), "unix:" + sock}
	cfg.Metrics.Listen = strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	if err := healthcheck(ctx, &cfg); err != nil {
		t.Fatalf("all up: %v", err)
	}
	ready = http.StatusServiceUnavailable
	if err := healthcheck(ctx, &cfg); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("store not ready: err %v, want the 503", err)
	}
	cfg.Metrics.Listen = ""
	unix.Close()
	if err := healthcheck(ctx, &cfg); err == nil || !strings.Contains(err.Error(), "unix:"+sock) {
		t.Errorf("listener closed: err %v, want it named", err)
	}
}
