package db

import (
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Classify marks a store error temporary (policy.Temporary) when it may go
// away by itself (IsTemporary), so the engine logs and counts it as an
// outage, not a bug. The checks that keep state (greylist, ratelimit,
// replies) return their store errors through it.
func Classify(err error) error {
	if IsTemporary(err) {
		return policy.Temporary(err)
	}
	return err
}

// IsTemporary reports whether err may go away by itself: the server is
// down, restarting, overloaded or slow, or a lock is held. The engine
// answers its on_error action for either kind; the distinction decides what
// is logged as an outage and what as a bug.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOENT) && isNetErr(err) { // unix socket gone: server down
		return true
	}
	if pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return temporaryPGCode(pgErr.Code)
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	if _, ok := SQLiteCode(err); ok {
		return IsSQLiteBusy(err)
	}
	return isNetErr(err)
}

// IsSQLiteBusy reports SQLITE_BUSY or SQLITE_LOCKED: another connection
// holds the lock this one needs, past the busy timeout's wait.
func IsSQLiteBusy(err error) bool {
	code, ok := SQLiteCode(err)
	if !ok {
		return false
	}
	switch code & 0xff { // primary result code
	case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
		return true
	}
	return false
}

// SQLiteCode is the result code of an SQLite error: the driver's
// (*sqlite.Error) or a Bulk handle's (*BulkError).
func SQLiteCode(err error) (int, bool) {
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) {
		return sqlErr.Code(), true
	}
	var bulkErr *BulkError
	if errors.As(err, &bulkErr) {
		return bulkErr.Code(), true
	}
	return 0, false
}

func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe)
}

// temporaryPGCode classifies SQLSTATEs (PostgreSQL appendix A): connection
// exceptions, shutdowns, resource exhaustion, serialization and lock waits.
func temporaryPGCode(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", "53", "57":
		// connection exception; insufficient resources (too many
		// connections); operator intervention: admin_shutdown 57P01,
		// cannot_connect_now 57P03, query_canceled 57014 (statement_timeout)
		return true
	case "40": // transaction rollback: serialization failure, deadlock
		return true
	}
	return code == "55P03" // lock_not_available
}
