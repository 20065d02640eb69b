package logtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Writers on other goroutines while the test reads: -race reports any
// unguarded access, and no line is lost.
func TestConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() { defer wg.Done(); fmt.Fprintf(&b, "line %d\n", i) }()
		go func() { defer wg.Done(); _ = b.String() }()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 8 {
		t.Fatalf("%d lines, want 8:\n%s", n, &b)
	}
}
