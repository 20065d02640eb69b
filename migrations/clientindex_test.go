package migrations

import (
	"context"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// 0008 moves PostgreSQL's per-client index of the decision log from the
// partitioned table to each day once it has ended: a store upgraded from
// 0007 loses it on every partition, today's included, and gc builds it
// again for the days that have ended.
func TestClientIndexByDayUpgrade(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := db.Open(ctx, pgtest.New(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ms, i := applyUpTo(ctx, t, d, "0008_decisions_client_index_by_day")
	now := time.Now()
	// Two ended days, today and tomorrow, and the default partition.
	if _, err := decisionlog.EnsurePartitions(ctx, d, now.AddDate(0, 0, -2), 3); err != nil {
		t.Fatal(err)
	}
	clientIndexed := func() int {
		var n int
		err := d.PG.QueryRow(ctx, `SELECT count(*) FROM pg_index x
			JOIN pg_inherits i ON i.inhrelid = x.indrelid
			JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
			WHERE i.inhparent = 'decisions'::regclass AND a.attname = 'client'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := clientIndexed(); n != 5 {
		t.Fatalf("before 0008, %d partitions have a client index; want all 5", n)
	}
	if applied, err := apply(ctx, d, ms); err != nil || len(applied) != len(ms)-i {
		t.Fatalf("applying from 0008: %v, %v", applied, err)
	}
	if n := clientIndexed(); n != 0 {
		t.Fatalf("after 0008, %d partitions keep a client index; want none", n)
	}
	done, err := decisionlog.IndexClosedDays(ctx, d, now, false)
	if err != nil || len(done) != 2 {
		t.Fatalf("gc after the upgrade indexed %v, %v; want the two ended days", done, err)
	}
	if n := clientIndexed(); n != 2 {
		t.Fatalf("%d partitions have a client index after gc; want 2", n)
	}
}
