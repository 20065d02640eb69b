package db

import (
	"context"
	"database/sql"
)

// InTx runs fn in one transaction on an SQLite database: committed when
// fn returns nil, rolled back otherwise. It is how an SQLite store makes
// its several statements as atomic as PostgreSQL's one (greylist,
// ratelimit, whitelist). The error is fn's, BeginTx's or Commit's; a
// failed rollback never hides the error that caused it.
func InTx(ctx context.Context, sdb *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := sdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
