package config

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
)

// referenceDoc is the configuration reference this test keeps honest.
const referenceDoc = "../docs/configuration.md"

// TestReferenceNamesEveryKey fails when a config key exists in the code but
// not in docs/configuration.md, so the reference cannot rot silently.
//
// Convention: every key is written in the reference as its full dotted
// path in backticks, e.g. `greylist.delay`, `log.level`, `listen`.
//   - checks is a map keyed by check name with the same three keys each:
//     it is written `checks.<name>.timeout`, and every check name must
//     also appear as `checks.<check>` (where its default timeout is given).
//   - spf.actions is a map keyed by SPF result, each with its own default:
//     every result is a key of its own, `spf.actions.fail`.
//   - dnsbl.lists is a sequence of maps: its keys are `dnsbl.lists[].site`.
//     The default has no lists, so one empty entry is added to reach them.
func TestReferenceNamesEveryKey(t *testing.T) {
	doc, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	keys := configKeys(t)
	// Guard against a walk that finds nothing and so can never fail.
	for _, want := range []string{"listen", "greylist.delay", "checks.<name>.on_error",
		"checks.spf", "spf.actions.temperror", "dnsbl.lists[].identities", "gc.interval"} {
		if !slices.Contains(keys, want) {
			t.Fatalf("key walk missed %q; got %v", want, keys)
		}
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("%s does not mention `%s`", referenceDoc, k)
		}
	}
}

// configKeys returns the dotted path of every key of the default config,
// following the conventions of TestReferenceNamesEveryKey.
func configKeys(t *testing.T) []string {
	t.Helper()
	c := Default(testChecks)
	c.DNSBL.Lists = []dnsbl.List{{}}
	b, err := yaml.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	var keys []string
	walkKeys(root.Content[0], "", &keys)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// walkKeys appends the path of every mapping key under n.
func walkKeys(n *yaml.Node, prefix string, keys *[]string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			*keys = append(*keys, path)
			if path == "checks" {
				walkChecks(n.Content[i+1], keys)
				continue
			}
			walkKeys(n.Content[i+1], path, keys)
		}
	case yaml.SequenceNode:
		// Items of a sequence share their keys: one walk of each suffices.
		for _, item := range n.Content {
			walkKeys(item, prefix+"[]", keys)
		}
	}
}

// walkChecks records each check name, and each check's keys once under
// the placeholder <name>.
func walkChecks(n *yaml.Node, keys *[]string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		*keys = append(*keys, "checks."+n.Content[i].Value)
		walkKeys(n.Content[i+1], "checks.<name>", keys)
	}
}
