package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenDocs checks that gendocs writes a page per visible command, none
// for hidden ones, and the three completion scripts. scripts/package-test.sh
// checks the installed result.
func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "3456000") // 1970-02-10, "Feb 1970" in any time zone
	root := newRootCmd()
	root.SetArgs([]string{"gendocs", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{
		"man/mxpolicyd.8", "man/mxpolicyd-serve.8", "man/mxpolicyd-whitelist-add.8",
		"completion/mxpolicyd.bash", "completion/_mxpolicyd", "completion/mxpolicyd.fish",
	} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "mxpolicyd") {
			t.Errorf("%s does not name mxpolicyd", f)
		}
	}
	for _, hidden := range []string{"gendocs", "healthcheck"} {
		if _, err := os.Stat(filepath.Join(dir, "man", "mxpolicyd-"+hidden+".8")); err == nil {
			t.Errorf("hidden command %s has a man page", hidden)
		}
	}
	serve, _ := os.ReadFile(filepath.Join(dir, "man", "mxpolicyd-serve.8"))
	if !strings.Contains(string(serve), `.TH "MXPOLICYD-SERVE" "8" "Feb 1970"`) {
		t.Errorf("mxpolicyd-serve.8 header: want section 8 dated by SOURCE_DATE_EPOCH:\n%.200s", serve)
	}
}
