package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestHelpMatchesReadme keeps the README and the CLI consistent: every
// command is shown in the README as "mxpolicyd <path>", every serve flag
// is named there, and every command has a short and a long-enough help.
func TestHelpMatchesReadme(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			path := sub.CommandPath()
			if sub.Runnable() && !strings.Contains(readme, path) {
				t.Errorf("README never shows %q", path)
			}
			if sub.Short == "" {
				t.Errorf("%q has no short help", path)
			}
			walk(sub)
		}
	}
	root := newRootCmd()
	walk(root)
	serve, _, _ := root.Find([]string{"serve"})
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(readme, "--"+f.Name) {
			t.Errorf("README does not mention serve --%s", f.Name)
		}
	})
}
