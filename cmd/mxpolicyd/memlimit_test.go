package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/config"
)

// currentLimit reads the soft memory limit without changing it: a
// negative input only reports (runtime/debug.SetMemoryLimit).
func currentLimit() int64 { return debug.SetMemoryLimit(-1) }

func TestSetMemoryLimit(t *testing.T) {
	before := currentLimit()
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	t.Setenv("GOMEMLIMIT", "")

	setMemoryLimit(&config.Config{MemoryLimitMiB: 72})
	if got := currentLimit(); got != 72<<20 {
		t.Errorf("memory_limit_mib 72: limit %d, want %d", got, 72<<20)
	}
	// A reload to 0 lifts the limit again.
	setMemoryLimit(&config.Config{})
	if got := currentLimit(); got != math.MaxInt64 {
		t.Errorf("memory_limit_mib 0: limit %d, want none", got)
	}
	// GOMEMLIMIT in the environment wins over the key.
	t.Setenv("GOMEMLIMIT", "1GiB")
	setMemoryLimit(&config.Config{MemoryLimitMiB: 72})
	if got := currentLimit(); got != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set: limit %d, want it left alone", got)
	}
}
