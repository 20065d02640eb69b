package contrib

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	rulesFile     = "prometheus/mxpolicyd.rules.yml"
	rulesTestFile = "prometheus/mxpolicyd.rules.test.yml"
)

// ruleFile is the part of a Prometheus rule file the checks read
// (Prometheus docs, "Alerting rules").
type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// ruleTests is the part of a promtool test file the checks read
// (Prometheus docs, "Unit testing for rules").
type ruleTests struct {
	Tests []struct {
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestAlertRules runs promtool on the rules and their unit tests, then
// checks that every rule and every test series names metrics the daemon
// exports and that every alert has a case that fires and one that stays
// quiet.
func TestAlertRules(t *testing.T) {
	promtool := need(t, "promtool", "prometheus")
	if out, stderr, err := run(t, promtool, "check", "rules", rulesFile); err != nil {
		t.Fatalf("promtool check rules: %v\n%s%s", err, out, stderr)
	}
	if out, stderr, err := run(t, promtool, "test", "rules", rulesTestFile); err != nil {
		t.Fatalf("promtool test rules: %v\n%s%s", err, out, stderr)
	}
	var rules ruleFile
	if err := yaml.Unmarshal([]byte(readFile(t, rulesFile)), &rules); err != nil {
		t.Fatal(err)
	}
	var tests ruleTests
	if err := yaml.Unmarshal([]byte(readFile(t, rulesTestFile)), &tests); err != nil {
		t.Fatal(err)
	}
	exported := exportedFamilies(t)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			checkExpr(t, rulesTestFile+" series", s.Series, exported)
		}
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			checkExpr(t, "alert "+r.Alert, r.Expr, exported)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: want a severity label and summary and description annotations", r.Alert)
			}
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: %s needs a case where it fires (%v) and one where it does not (%v)",
					r.Alert, rulesTestFile, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s: no alerting rules", rulesFile)
	}
	for name := range fires {
		if !strings.HasPrefix(name, "Mxpolicyd") {
			t.Errorf("%s tests alert %s, which is not an mxpolicyd rule", rulesTestFile, name)
		}
	}
}
