package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
)

// The table's defaults load, fit the default request_timeout, and accept
// the shipped example configuration.
func TestCheckTableLoads(t *testing.T) {
	for _, path := range []string{"", "../../contrib/config/mxpolicyd.example.yaml"} {
		if _, err := config.Load(path, checkDefaults(), nil); err != nil {
			t.Errorf("%q: %v", path, err)
		}
	}
}

// The table's default shares fit the default budget with every check on
// (config refuses a file whose enabled shares do not): a new row takes its
// share from another, or raises the default request_timeout.
func TestCheckTableDefaultsFit(t *testing.T) {
	var sum time.Duration
	for _, c := range checkTable() {
		sum += c.defaults.Timeout
	}
	if budget := config.Default(checkDefaults()).RequestTimeout; sum > budget {
		t.Errorf("the table's default shares add up to %s, over the default request_timeout %s", sum, budget)
	}
}

// The pages that list the checks list the table's, in its order: the
// README's "How a decision is made", docs/configuration.md's checks
// section, the example config's checks block and ARCHITECTURE's request
// walk-through. A new row fails this until each names it.
func TestDocsFollowTheTable(t *testing.T) {
	var want []string
	for _, c := range checkTable() {
		want = append(want, c.name)
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var readme []string
	for _, m := range regexp.MustCompile(`(?m)^\d\. \*\*(\w+)\*\*:`).FindAllStringSubmatch(section(read("../../README.md"), "## How a decision is made"), -1) {
		readme = append(readme, m[1])
	}
	confSentence, _, _ := strings.Cut(section(read("../../docs/configuration.md"), "## `checks`"), "(any other name is an error)")
	arch := regexp.MustCompile("checks\\.go`: ([a-z,\\s]+);").FindStringSubmatch(section(read("../../docs/ARCHITECTURE.md"), "## One request"))
	var example struct {
		Checks yaml.Node `yaml:"checks"`
	}
	if err := yaml.Unmarshal([]byte(read("../../contrib/config/mxpolicyd.example.yaml")), &example); err != nil {
		t.Fatal(err)
	}
	var exampleNames []string
	for i := 0; i+1 < len(example.Checks.Content); i += 2 {
		exampleNames = append(exampleNames, example.Checks.Content[i].Value)
	}
	for page, got := range map[string][]string{
		"README.md, How a decision is made": readme,
		"docs/configuration.md, checks":     backticked(confSentence),
		"contrib/config example, checks:":   exampleNames,
		"docs/ARCHITECTURE.md, One request": splitNames(arch),
	} {
		if !slices.Equal(got, want) {
			t.Errorf("%s lists %v, want the table's %v", page, got, want)
		}
	}
}

// section is the text of page from heading to the next heading of any
// level, or "" when there is no such heading.
func section(page, heading string) string {
	_, rest, ok := strings.Cut(page, "\n"+heading+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, "\n#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func backticked(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile("`(\\w+)`").FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func splitNames(m []string) []string {
	if m == nil {
		return nil
	}
	return strings.FieldsFunc(m[1], func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// The wiring builds the table's checks in the table's order, each under
// the name its row gives, and leaves out a disabled one.
func TestStepsFollowTheTable(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Load("", checkDefaults(), func(c *config.Config) {
		c.DNSBL.Lists = []dnsbl.List{{Site: "zen.example.test"}}
		c.RateLimit.Rules = []ratelimit.Rule{{Name: "per-user", Key: []ratelimit.Part{ratelimit.PartSASLUsername},
			Limit: ratelimit.Limit{N: 300, Per: time.Hour}}}
		c.DNS.Server = "127.0.0.1:1"
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := db.Open(ctx, filepath.Join(t.TempDir(), "mx.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := applyMigrations(ctx, store, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	w := newWiring(ctx, cfg, slog.New(slog.DiscardHandler), store, nil, false)
	defer w.close()
	var want []string
	for _, c := range checkTable() {
		want = append(want, c.name)
	}
	if got := stepNames(t, w, cfg); !slices.Equal(got, want) {
		t.Fatalf("steps %v, want the table's %v", got, want)
	}
	off := false
	s := cfg.Checks[dnsbl.Name]
	s.Enabled = &off
	cfg.Checks[dnsbl.Name] = s
	without := slices.DeleteFunc(slices.Clone(want), func(n string) bool { return n == dnsbl.Name })
	if got := stepNames(t, w, cfg); !slices.Equal(got, without) {
		t.Fatalf("with dnsbl disabled: steps %v, want %v", got, without)
	}
}

func stepNames(t *testing.T, w *wiring, cfg *config.Config) []string {
	t.Helper()
	steps, err := w.steps(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Check.Name())
		if s.Timeout != cfg.Checks[s.Check.Name()].Timeout {
			t.Errorf("%s: timeout %s, want its checks entry's", s.Check.Name(), s.Timeout)
		}
	}
	return names
}
