package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// /report is served only with metrics.report on, by the handler given.
func TestReportRoute(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("the page")) })
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.Listen, cfg.Report = "127.0.0.1:9430", on
		srv := NewServer(cfg, New(), nil, nil)
		srv.ServeReport(page)
		ts := httptest.NewServer(srv.Handler())
		code, body := get(t, ts.URL+ReportPath)
		ts.Close()
		switch {
		case on && (code != 200 || body != "the page"):
			t.Errorf("report on: %d %q", code, body)
		case !on && code != http.StatusNotFound:
			t.Errorf("report off: %d, want 404", code)
		}
	}
}

func TestReportConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: "127.0.0.1:9430", Path: "/metrics", Report: true}, ""},
		{Config{Path: "/metrics", Report: true}, "metrics.report: needs metrics.listen"},
		{Config{Listen: "127.0.0.1:9430", Path: "/report", Report: true}, `metrics.path: "/report" is the report's`},
		{Config{Listen: "127.0.0.1:9430", Path: "/report"}, ""},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if DefaultConfig().Report {
		t.Error("the report must be off by default")
	}
}
