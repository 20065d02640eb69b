package decisionlog

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// partitionLockID serializes partition DDL among the hosts sharing a
// database ("mxpoldec"), so two daemons starting at once do not both
// create the same day.
const partitionLockID int64 = 0x6d78706f6c646563

// ddlLockTimeout bounds how long partition DDL waits for its table lock.
// Creating or dropping a partition needs an exclusive lock on decisions,
// and a waiting exclusive lock blocks every writer queued behind it; a long
// report holding the table must make gc give up, not stall the daemons.
const ddlLockTimeout = "3s"

const partitionPrefix = "decisions_p"

var partitionName = regexp.MustCompile(`^decisions_p(\d{8})$`)

func dayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func partitionFor(day time.Time) string { return partitionPrefix + day.Format("20060102") }

// partitionDay is the day a daily partition holds, from its name; false
// for any other table (decisions_default).
func partitionDay(name string) (time.Time, bool) {
	m := partitionName.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	day, err := time.Parse("20060102", m[1])
	return day, err == nil
}

// EnsurePartitions creates the daily partitions of the decisions table
// from now's day (UTC) to daysAhead days later, and returns the names it
// created. Rows of those days that already sit in decisions_default move
// into the new partition. It is a no-op on SQLite, and safe to run on
// several hosts at once.
func EnsurePartitions(ctx context.Context, d *db.DB, now time.Time, daysAhead int) ([]string, error) {
	days := make([]time.Time, max(daysAhead+1, 0))
	for i := range days {
		days[i] = dayStart(now).AddDate(0, 0, i)
	}
	return dialectOf(d).ensurePartitions(ctx, days)
}

// ensurePartitions: SQLite's one table takes every day as it comes.
func (sqliteLog) ensurePartitions(context.Context, []time.Time) ([]string, error) { return nil, nil }

func (p pgLog) ensurePartitions(ctx context.Context, days []time.Time) ([]string, error) {
	existing, err := partitions(ctx, p.d)
	if err != nil {
		return nil, err
	}
	var created []string
	for _, day := range days {
		name := partitionFor(day)
		if existing[name] {
			continue
		}
		did, err := createPartition(ctx, p.d, name, day)
		if err != nil {
			return created, fmt.Errorf("decisionlog: create partition %s: %w", name, err)
		}
		if did {
			created = append(created, name)
		}
	}
	return created, nil
}

// partitions lists the existing daily partitions by name.
func partitions(ctx context.Context, d *db.DB) (map[string]bool, error) {
	rows, err := d.PG.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'decisions'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("decisionlog: list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("decisionlog: list partitions: %w", err)
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		if partitionName.MatchString(n) {
			out[n] = true
		}
	}
	return out, nil
}

// createPartition creates one day's partition in one transaction. A new
// partition may not overlap rows of the default partition, so those rows
// (a daemon wrote before the partition existed) are set aside, the
// partition created, and the rows put back through the parent.
func createPartition(ctx context.Context, d *db.DB, name string, day time.Time) (bool, error) {
	var created bool
	err := pgx.BeginFunc(ctx, d.PG, func(tx pgx.Tx) error {
		if err := lockDDL(ctx, tx); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil || exists {
			return err
		}
		lo, hi := day, day.AddDate(0, 0, 1)
		stray, err := setAsideDefault(ctx, tx, lo, hi)
		if err != nil {
			return err
		}
		// DDL takes no parameters; the name and bounds come from a
		// time.Time, never from input.
		ddl := fmt.Sprintf("CREATE TABLE %s PARTITION OF decisions FOR VALUES FROM ('%s') TO ('%s')",
			pgx.Identifier{name}.Sanitize(), lo.Format(time.RFC3339), hi.Format(time.RFC3339))
		if _, err := tx.Exec(ctx, ddl); err != nil {
			return err
		}
		if stray {
			if _, err := tx.Exec(ctx, "INSERT INTO decisions SELECT * FROM decisions_stray"); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	return created, err
}

func lockDDL(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+ddlLockTimeout+"'"); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLockID)
	return err
}

// setAsideDefault moves the default partition's rows in [lo, hi) into a
// temporary table dropped at commit, and reports whether there were any.
func setAsideDefault(ctx context.Context, tx pgx.Tx, lo, hi time.Time) (bool, error) {
	var found bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM decisions_default
		WHERE time >= $1 AND time < $2)`, lo, hi).Scan(&found)
	if err != nil || !found {
		return false, err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE decisions_stray
		(LIKE decisions) ON COMMIT DROP`); err != nil {
		return false, err
	}
	_, err = tx.Exec(ctx, `WITH moved AS (
		DELETE FROM decisions_default WHERE time >= $1 AND time < $2 RETURNING *)
		INSERT INTO decisions_stray SELECT * FROM moved`, lo, hi)
	return err == nil, err
}
