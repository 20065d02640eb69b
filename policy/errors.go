package policy

import (
	"context"
	"errors"
)

// ErrorKind says how a check failed. Every kind gets the step's on_error
// answer; the kind tells an operator what to look at: a check that ran
// out of its share of the budget, an outage that ends by itself (a DNS
// server or the database down), or a fault that does not (a bug, a bad
// configuration). Logs (error_<check>_kind) and the check errors metric
// (kind label) use these values.
type ErrorKind string

// The kinds of check failure.
const (
	ErrorTimeout   ErrorKind = "timeout"
	ErrorTemporary ErrorKind = "temporary"
	ErrorPermanent ErrorKind = "permanent"
)

// Temporary marks err as an outage that may end by itself. Checks call
// it with their own classification (db.IsTemporary for the store,
// resolver.IsTemporary for DNS), so the engine needs no knowledge of
// drivers. The text and the chain of err are unchanged.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return &temporaryError{err}
}

type temporaryError struct{ err error }

func (e *temporaryError) Error() string { return e.err.Error() }
func (e *temporaryError) Unwrap() error { return e.err }

// IsTimeout reports whether err is a deadline that ran out: a context
// deadline, or a network or driver error that says it timed out. It is the
// one timeout test of the program: the engine and the metrics use it.
func IsTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}

// KindOf classifies a check's error: a timeout first (a database that
// timed out is also temporary, but the budget is what ran out), then what
// the check marked Temporary; anything else is permanent.
func KindOf(err error) ErrorKind {
	var t *temporaryError
	switch {
	case IsTimeout(err):
		return ErrorTimeout
	case errors.As(err, &t):
		return ErrorTemporary
	}
	return ErrorPermanent
}
