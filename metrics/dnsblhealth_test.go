package metrics

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
)

func TestDNSListHealthGauge(t *testing.T) {
	m := New()
	var obs dnsbl.Observer = m
	obs.DNSListHealth(map[string]bool{"zen.spamhaus.org": true, "dbl.spamhaus.org": false})
	want := `
# HELP mxpolicyd_dnsbl_list_healthy 1 while a DNS list passes its self-check (RFC 5782 §5 test points), 0 while it fails it and is ignored, by list. Lists opted out (self_check: false) or not yet probed are absent.
# TYPE mxpolicyd_dnsbl_list_healthy gauge
mxpolicyd_dnsbl_list_healthy{list="dbl.spamhaus.org"} 0
mxpolicyd_dnsbl_list_healthy{list="zen.spamhaus.org"} 1
`
	wantExposition(t, m, want, "mxpolicyd_dnsbl_list_healthy")
	// A reload that drops dbl: the next report is the whole set.
	obs.DNSListHealth(map[string]bool{"zen.spamhaus.org": true})
	if n := testutil.CollectAndCount(m.dnsblHealthMetrics.healthy); n != 1 {
		t.Errorf("%d series after dbl left the config, want 1", n)
	}
	obs.DNSListHealth(nil)
	if n := testutil.CollectAndCount(m.dnsblHealthMetrics.healthy); n != 0 {
		t.Errorf("%d series after an empty report, want 0", n)
	}
	var nilM *Metrics
	nilM.DNSListHealth(map[string]bool{"x": true})
}

// /readyz lists the detail lines and stays 200: a failing list does not
// make the daemon unready.
func TestReadyzDetail(t *testing.T) {
	srv := NewServer(DefaultConfig(), New(), nil, nil)
	srv.ReadyDetail(func() []string {
		return []string{"dnsbl zen.spamhaus.org: healthy", "dnsbl bad.example: unhealthy: answered 127.0.0.2 for 127.0.0.1"}
	})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	code, body := get(t, ts.URL+"/readyz")
	want := "ok\ndnsbl zen.spamhaus.org: healthy\ndnsbl bad.example: unhealthy: answered 127.0.0.2 for 127.0.0.1\n"
	if code != 200 || body != want {
		t.Errorf("readyz: %d %q, want 200 %q", code, body, want)
	}
}
