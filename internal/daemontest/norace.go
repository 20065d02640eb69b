//go:build !race

package daemontest

// Race reports whether the tests run with the race detector, and so the
// daemon Build makes: several times slower, SQLite most of all.
const Race = false
