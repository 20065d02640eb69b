//go:build unix

package whitelist

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A list file that is a named pipe is refused at once, naming it: the
// daemon reads its lists at start and on every reload, and a pipe with no
// writer would hold that read for good.
func TestListFileFIFORefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "clients")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ClientsFiles = []string{fifo}
	done := make(chan error, 1)
	go func() { _, err := New(context.Background(), cfg, Options{}); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("New with a FIFO list: %v, want an error naming it", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("New blocked on a FIFO list file")
	}
}
