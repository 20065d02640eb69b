package contrib

import (
	"net"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/config"
)

const exampleConfig = "config/mxpolicyd.example.yaml"

// loadExample loads the example through the daemon's own loader, which
// rejects unknown keys and invalid values.
func loadExample(t *testing.T) *config.Config {
	t.Helper()
	t.Setenv(config.EnvDatabase, "") // the file's database key, not the environment's
	c, err := config.Load(exampleConfig, exampleChecks(t), nil)
	if err != nil {
		t.Fatalf("%s: %v", exampleConfig, err)
	}
	return c
}

// exampleChecks names the checks the example configures, as the check
// table would: the table itself is in a main package (cmd/mxpolicyd/checks.go),
// and its TestCheckTableLoads loads the example with the real table, so
// here the names come from the file and no second list can drift.
func exampleChecks(t *testing.T) []config.CheckDefault {
	t.Helper()
	var doc struct {
		Checks map[string]any `yaml:"checks"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, exampleConfig)), &doc); err != nil {
		t.Fatalf("%s: %v", exampleConfig, err)
	}
	var out []config.CheckDefault
	for name := range doc.Checks {
		out = append(out, config.CheckDefault{Name: name})
	}
	slices.SortFunc(out, func(a, b config.CheckDefault) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// exampleListen is the example's first TCP listen address.
func exampleListen(t *testing.T) string {
	t.Helper()
	for _, l := range loadExample(t).Listen {
		if !strings.HasPrefix(l, "unix:") {
			return l
		}
	}
	t.Fatalf("%s: no TCP listen address", exampleConfig)
	return ""
}

func TestExampleConfig(t *testing.T) {
	c := loadExample(t)
	host, _, err := net.SplitHostPort(c.Metrics.Listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("metrics.listen %q: the example should keep metrics on loopback", c.Metrics.Listen)
	}
}

// TestExampleConfigCoversEveryKey fails when the config grows a key the
// example does not show (set or commented out), so the example stays the
// complete tour of the configuration.
func TestExampleConfigCoversEveryKey(t *testing.T) {
	text := readFile(t, exampleConfig)
	for _, key := range yamlKeys(reflect.TypeOf(config.Config{}), "") {
		// Top-level keys start the line (perhaps commented out); nested
		// keys are indented.
		name, indent := key, `(# ?)?`
		if i := strings.LastIndex(key, "."); i >= 0 {
			name, indent = key[i+1:], `[ \t]*#?[ \t]+`
		}
		if !regexp.MustCompile(`(?m)^` + indent + regexp.QuoteMeta(name) + `:`).MatchString(text) {
			t.Errorf("%s: key %s is not shown", exampleConfig, key)
		}
	}
}

// yamlKeys lists the dotted yaml keys of a struct, descending into nested
// structs (not maps: their keys are data, like check names).
func yamlKeys(typ reflect.Type, prefix string) []string {
	var out []string
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			out = append(out, yamlKeys(f.Type, prefix)...) // e.g. policy.ServerConfig: top-level keys
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, prefix+name)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			out = append(out, yamlKeys(f.Type, prefix+name+".")...)
		}
	}
	return out
}
