package metrics

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" means valid; else a substring of the error
	}{
		{DefaultConfig(), ""},
		{Config{Listen: "127.0.0.1:9430", Path: "/metrics"}, ""},
		{Config{Listen: "[::1]:9430", Path: "/metrics"}, ""},
		{Config{Listen: ":9430", Path: "/x"}, ""},
		{Config{Listen: "127.0.0.1", Path: "/metrics"}, `metrics.listen: must be host:port, got "127.0.0.1"`},
		{Config{Listen: "127.0.0.1:0", Path: "/metrics"}, "metrics.listen: port must be a number from 1 to 65535"},
		{Config{Listen: "127.0.0.1:http", Path: "/metrics"}, "metrics.listen: port must be a number from 1 to 65535"},
		{Config{Path: "metrics"}, `metrics.path: must start with "/"`},
		{Config{Path: ""}, `metrics.path: must start with "/"`},
		{Config{Path: "/readyz"}, "metrics.path: \"/readyz\" is reserved"},
		// Patterns net/http would refuse at serve's start (by panicking).
		{Config{Listen: "127.0.0.1:9430", Path: "/metrics{"}, "metrics.path: \"/metrics{\" cannot be served"},
		{Config{Listen: "127.0.0.1:9430", Path: "/", PProf: true}, "metrics.path: \"/\" cannot be served"},
		{Config{Listen: "127.0.0.1:9430", Path: "/debug/", PProf: true}, "metrics.path: \"/debug/\" cannot be served"},
		{Config{Listen: "127.0.0.1:9430", Path: "/", Report: true}, ""},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if DefaultConfig().Enabled() {
		t.Error("metrics must be off by default")
	}
}
