package greylist

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mxpolicyd/mxpolicyd/internal/batch"
)

func TestBatchOptionsDefaults(t *testing.T) {
	for _, tc := range []struct {
		in, want BatchOptions
	}{
		{BatchOptions{}, BatchOptions{MaxRows: 64, Window: time.Millisecond, MaxInFlight: 4}},
		{BatchOptions{MaxRows: 8, Window: -1, MaxInFlight: 2}, BatchOptions{MaxRows: 8, Window: 0, MaxInFlight: 2}},
		{BatchOptions{Window: time.Second}, BatchOptions{MaxRows: 64, Window: time.Second, MaxInFlight: 4}},
	} {
		if got := tc.in.withDefaults(time.Millisecond, 4); got != tc.want {
			t.Errorf("%+v: %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// retryable is an error pgx raised before writing anything.
type retryable struct{}

func (retryable) Error() string     { return "dial: connection refused" }
func (retryable) SafeToRetry() bool { return true }

func TestPGResendAndRowErrors(t *testing.T) {
	for _, tc := range []struct {
		err         error
		resend, row bool
	}{
		{retryable{}, true, false},
		{&pgconn.PgError{Code: "40P01"}, true, false}, // deadlock victim: rolled back
		{&pgconn.PgError{Code: "40001"}, true, false},
		{&pgconn.PgError{Code: "23514"}, false, true}, // check violation: that row's values
		{&pgconn.PgError{Code: "22021"}, false, true}, // invalid UTF-8
		{&pgconn.PgError{Code: "57P01"}, false, false},
		{io.ErrUnexpectedEOF, false, false}, // lost after sending: may have committed
	} {
		var re *batch.RowError
		row := errors.As(pgStatementError(tc.err, 3), &re) && re.Row == 3
		if got := pgResend(tc.err); got != tc.resend || row != tc.row {
			t.Errorf("%v: resend %t, row error %t; want %t, %t", tc.err, got, row, tc.resend, tc.row)
		}
	}
}

func TestLiteRowErrors(t *testing.T) {
	d, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.ExecContext(ctx, "CREATE TABLE t (k TEXT NOT NULL CHECK (k IN ('net', 'spf')))"); err != nil {
		t.Fatal(err)
	}
	_, check := d.ExecContext(ctx, "INSERT INTO t VALUES ('bogus')")
	_, syntax := d.ExecContext(ctx, "INSERT INTO nowhere VALUES (1)")
	var re *batch.RowError
	if !errors.As(liteStatementError(check, 2), &re) || re.Row != 2 {
		t.Errorf("check violation %v: not a row error", check)
	}
	if errors.As(liteStatementError(syntax, 2), &re) {
		t.Errorf("missing table %v: a row error", syntax)
	}
}

// Each SQLite statement binds only the parameters it uses, renumbered in
// order, and takes them from the right place in liteDecideArgs.
func TestCompactParams(t *testing.T) {
	q := compactParams("a = ?12 AND b = ?3 OR c = ?12 AND d = ?1")
	if want := "a = ?3 AND b = ?2 OR c = ?3 AND d = ?1"; q.text != want {
		t.Errorf("text %q, want %q", q.text, want)
	}
	if got := fmt.Sprint(q.args); got != "[0 2 11]" {
		t.Errorf("args %s, want [0 2 11]", got)
	}
	if got := fmt.Sprint(liteQueries[stAWLClient].args); got != "[4 8 11 13]" {
		t.Errorf("client lookup binds %s, want ?5 ?9 ?12 ?14: [4 8 11 13]", got)
	}
}
