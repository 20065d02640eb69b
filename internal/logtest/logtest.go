// Package logtest is a log sink for tests: the code under test logs into
// it from its own goroutines (a slog handler, a daemon's stdout) while the
// test reads what was written so far. It is for tests only.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that writers and the test may use at once.
// The zero value is ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

func (b *Buffer) String() string { return string(b.Bytes()) }
