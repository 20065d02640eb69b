package db

// Dialect returns pg when kind is Postgres and lite otherwise (SQLite).
//
// It is the one place outside this package where code branches on the
// store kind. Every package that speaks SQL keeps its two dialects the way
// greylist does (the Store interface, with PGStore and SQLiteStore): a small
// interface of its own with one PostgreSQL and one SQLite implementation,
// picked once through Dialect, when the store or the call starts.
//
// An implementation per dialect, rather than one table of SQL strings per
// dialect, because the dialects differ in more than their text: the client
// (pgx or database/sql), how a value is bound and scanned (timestamptz and
// inet, or Unix seconds and text), and at times the method itself (one
// statement or one transaction; dropping a day's partition or deleting its
// rows). A table of strings would still need a branch at each of those.
// An implementation keeps a dialect's constant SQL text next to the code
// that binds its parameters and scans its rows; what the dialects share
// (column lists, result mapping, the outcome rules) stays in one function
// both call.
//
// pg and lite may be values or, where building one has a cost (a batching
// goroutine), constructors: Dialect(kind, newPG, newLite)(args).
func Dialect[T any](kind string, pg, lite T) T {
	if kind == Postgres {
		return pg
	}
	return lite
}
