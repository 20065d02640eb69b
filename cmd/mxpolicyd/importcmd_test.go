package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// A DSN openSource cannot use is refused naming only what is wrong, never
// the DSN: a MySQL DSN's password must not be printed back.
func TestOpenSourceRedacts(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	for _, dsn := range []string{
		"mysql://sg:TopSecret@db/sqlgrey",
		filepath.Join(t.TempDir(), "TopSecret-missing.db"),
	} {
		_, err := openSource(context.Background(), dsn, quiet)
		if err == nil {
			t.Fatalf("%s: opened", dsn)
		}
		if strings.Contains(dsn, "mysql") && strings.Contains(err.Error(), "TopSecret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
	// A file: DSN names the file after its prefix.
	if _, err := openSource(context.Background(), "file:"+filepath.Join(t.TempDir(), "none.db"), quiet); err == nil ||
		strings.Contains(err.Error(), "stat file:") {
		t.Errorf("file: DSN: %v, want the missing file named without its prefix", err)
	}
}
