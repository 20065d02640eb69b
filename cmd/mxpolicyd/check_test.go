package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// check promises to write nothing: a missing SQLite file is an error and
// is not created; an existing one is read and left as it was, although
// the request is one greylisting would record.
func TestCheckWritesNothing(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	cfg := mustAbs(t, "testdata/nodns.yaml")
	check := []string{"check", "--config", cfg, "--client-address", "192.0.2.10",
		"--sender", "alice@example.org", "--recipient", "bob@example.net"}

	missing := filepath.Join(dir, "sub", "missing.db")
	out, err := run(append(check, "--database", missing)...)
	if err == nil || !strings.Contains(out, "no such file") {
		t.Fatalf("check on a missing database: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Fatalf("check created %s (stat: %v)", filepath.Join(dir, "sub"), err)
	}

	path := filepath.Join(dir, "mx.db")
	if out, err := run("migrate", "--config", cfg, "--database", path); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	before := snapshot(t, dir)
	out, err = run(append(check, "--database", path)...)
	if err != nil || !strings.Contains(out, "new triplet") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if after := snapshot(t, dir); after != before {
		t.Errorf("check changed the database directory:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot names every file of dir with a hash of its contents, but for
// the -wal and -shm files that SQLite creates for any reader of a WAL
// database (SQLite's wal.html, "Read-Only Databases"): they hold no
// data of their own.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "-wal") || strings.HasSuffix(e.Name(), "-shm") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&b, "%s:%x ", e.Name(), sha256.Sum256(data))
	}
	return b.String()
}
