package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// metrics.pprof serves the profiles to loopback clients only, and nothing
// under /debug/pprof/ while it is off.
func TestPProf(t *testing.T) {
	on := Config{Listen: "127.0.0.1:9430", Path: "/metrics", PProf: true}
	off := Config{Listen: "127.0.0.1:9430", Path: "/metrics"}
	for _, tc := range []struct {
		cfg    Config
		remote string
		path   string
		code   int
	}{
		{on, "127.0.0.1:4000", "/debug/pprof/", http.StatusOK},
		{on, "[::1]:4000", "/debug/pprof/goroutine?debug=1", http.StatusOK},
		{on, "127.0.0.1:4000", "/debug/pprof/cmdline", http.StatusNotFound}, // os.Args: --database
		{on, "127.0.0.1:4000", "/debug/pprof/symbol", http.StatusOK},
		{on, "192.0.2.1:4000", "/debug/pprof/heap", http.StatusForbidden},
		{on, "[::ffff:192.0.2.1]:4000", "/debug/pprof/", http.StatusForbidden},
		{off, "127.0.0.1:4000", "/debug/pprof/", http.StatusNotFound},
		{on, "192.0.2.1:4000", "/metrics", http.StatusOK},
	} {
		h := NewServer(tc.cfg, New(), nil, nil).Handler()
		req := httptest.NewRequest("GET", tc.path, nil)
		req.RemoteAddr = tc.remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("pprof %v, %s from %s: %d, want %d", tc.cfg.PProf, tc.path, tc.remote, rec.Code, tc.code)
		}
	}
}

func TestPProfConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Path: "/metrics", PProf: true}, "metrics.pprof: needs metrics.listen"},
		{Config{Listen: "127.0.0.1:9430", Path: "/debug/pprof/x", PProf: true}, "metrics.path"},
		{Config{Listen: "127.0.0.1:9430", Path: "/metrics", PProf: true}, ""},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// profile and trace run for their `seconds`, longer than the write
// timeout: net/http/pprof moves the write deadline back by that much.
func TestProfilesOutlastWriteTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PProf = true
	s := NewServer(cfg, New(), nil, nil)
	s.lim = shortLimits() // writes time out after 200 ms
	url := "http://" + serve(t, s) + PProfPath
	for path, magic := range map[string]string{
		"profile?seconds=1": "\x1f\x8b", // gzipped profile.proto
		"trace?seconds=1":   "go 1.",
	} {
		if code, body := get(t, url+path); code != http.StatusOK || !strings.HasPrefix(body, magic) {
			t.Errorf("%s: %d %.40q", path, code, body)
		}
	}
}
