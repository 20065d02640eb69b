//go:build race

package e2e

// raceEnabled builds the daemon with -race when the tests run with -race, so
// races under real Postfix traffic fail the run too.
const raceEnabled = true
