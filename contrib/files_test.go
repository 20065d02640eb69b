package contrib

import (
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checked maps every deployment file in contrib/ to what checks it. A new
// file without an entry fails TestEveryFileIsChecked: every contrib file
// must be exercised by a test, or it rots.
var checked = map[string]string{
	"postfix/main.cf.snippet":                         "TestPostfixSnippet (postconf)",
	"postfix/main.cf.unix.snippet":                    "TestPostfixUnixSnippet (postconf)",
	"systemd/mxpolicyd.service":                       "TestSystemdVerify, TestSystemdHardening, TestSystemdCommands",
	"systemd/mxpolicyd-gc.service":                    "TestSystemdVerify, TestSystemdHardening, TestSystemdCommands",
	"systemd/mxpolicyd-gc.timer":                      "TestSystemdVerify, TestSystemdHardening",
	"systemd/mxpolicyd.service.d/postfix-socket.conf": "TestSystemdVerify, TestPostfixUnixSnippet",
	"systemd/mxpolicyd.sysusers.conf":                 "TestSysusers (systemd-sysusers)",
	"cron/mxpolicyd-gc":                               "TestCron, TestSystemdCommands",
	"clamav/clamd.conf":                               "TestClamAVConfigs (clamconf); the end-to-end ClamAV test",
	"clamav/clamav-milter.conf":                       "TestClamAVConfigs (clamconf); the end-to-end ClamAV test",
	"compose/docker-compose.yml":                      "TestCompose",
	"compose/Dockerfile":                              "TestDockerfile; built, inspected and run by scripts/image.sh",
	"grafana/mxpolicyd.json":                          "TestGrafanaDashboard",
	"prometheus/mxpolicyd.rules.yml":                  "TestAlertRules (promtool check rules, promtool test rules)",
	"prometheus/mxpolicyd.rules.test.yml":             "TestAlertRules (promtool test rules)",
	"config/mxpolicyd.example.yaml":                   "TestExampleConfig, TestExampleConfigCoversEveryKey",
}

func TestEveryFileIsChecked(t *testing.T) {
	seen := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".md") {
			return err
		}
		seen[path] = true
		if _, ok := checked[path]; !ok {
			t.Errorf("%s is checked by nothing: add a test and list it in checked", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path := range checked {
		if !seen[path] {
			t.Errorf("checked lists %s, which does not exist", path)
		}
	}
}

// cron.d ignores files whose names contain a dot (run-parts naming).
func TestCronFileName(t *testing.T) {
	ok := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for path := range checked {
		if strings.HasPrefix(path, "cron/") && !ok.MatchString(filepath.Base(path)) {
			t.Errorf("%s: cron.d skips file names with dots or other characters", path)
		}
	}
}
