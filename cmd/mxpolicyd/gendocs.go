package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenDocsCmd is the hidden command scripts/package.sh runs to write the
// man pages and shell completions from this very command tree, so they
// cannot drift from --help. Hidden commands get no man page or completion.
func newGenDocsCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gendocs DIR",
		Short:  "Write man pages (DIR/man) and shell completions (DIR/completion)",
		Hidden: true,
		Args:   args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			return genDocs(cmd.Root(), a[0])
		},
	}
}

// genDocs writes mxpolicyd.8 and one page per subcommand (mxpolicyd-serve.8,
// named as their SEE ALSO sections link them), then the bash, zsh and fish
// completions. The man page date is $SOURCE_DATE_EPOCH when set
// (https://reproducible-builds.org/specs/source-date-epoch/), else today.
func genDocs(root *cobra.Command, dir string) error {
	man := filepath.Join(dir, "man")
	if err := os.MkdirAll(man, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true // the date lives in the header; no "HISTORY"
	err := doc.GenManTreeFromOpts(root, doc.GenManTreeOptions{
		Header: &doc.GenManHeader{
			Section: "8", // a daemon and its administration tools (man-pages(7))
			Source:  "mxpolicyd " + version(),
			Manual:  "mxpolicyd Manual",
		},
		Path:             man,
		CommandSeparator: "-",
	})
	if err != nil {
		return fmt.Errorf("gendocs: man pages: %w", err)
	}
	return genCompletions(root, filepath.Join(dir, "completion"))
}

// genCompletions writes cobra's own completion scripts; each asks the
// installed binary (mxpolicyd __complete) at run time.
func genCompletions(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gens := map[string]func(io.Writer) error{
		"mxpolicyd.bash": func(w io.Writer) error { return root.GenBashCompletionV2(w, true) },
		"_mxpolicyd":     root.GenZshCompletion,
		"mxpolicyd.fish": func(w io.Writer) error { return root.GenFishCompletion(w, true) },
	}
	for name, gen := range gens {
		if err := writeFile(filepath.Join(dir, name), gen); err != nil {
			return fmt.Errorf("gendocs: completion %s: %w", name, err)
		}
	}
	return nil
}

func writeFile(path string, gen func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := gen(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
