// Package panics turns a panic in the daemon's background work into an
// error, so that a bug in a library it calls (pgx, the SQLite driver, a
// YAML or regexp parser fed an operator's file) costs one run of that
// work, never the process and every Postfix connection it serves. The Go
// spec ("Handling panics") lets only the panicking goroutine recover, so
// each goroutine that runs such code calls Call around each unit of work.
package panics

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// Error is a recovered panic: its value and the stack where it happened.
type Error struct {
	Value any
	Stack []byte
}

func (e *Error) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// LogValue logs the stack with the value: a panic without its stack
// cannot be traced to the library line that raised it.
func (e *Error) LogValue() slog.Value {
	return slog.GroupValue(slog.String("panic", fmt.Sprint(e.Value)), slog.String("stack", string(e.Stack)))
}

// Call runs f and returns its error, or an *Error if f panicked.
func Call(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Value: p, Stack: debug.Stack()}
		}
	}()
	return f()
}
