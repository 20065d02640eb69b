package pgtest

import (
	"context"
	"testing"
	"time"
)

// A row committed, even asynchronously, and flushed before "stop -m
// immediate" is there after the restart;
// a frozen server answers nothing until thawed; a promoted standby holds
// what the primary had and accepts writes.
func TestServerFaults(t *testing.T) {
	s := StartServer(t)
	dsn := s.CreateDatabase(t, "faults")
	exec := func(dsn, sql string, limit time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		return adminExec(ctx, dsn, sql)
	}
	if err := exec(dsn, `CREATE TABLE x (i int); INSERT INTO x VALUES (1)`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := exec(dsn, `SET synchronous_commit = off; INSERT INTO x VALUES (2)`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s.WaitFlushed(t, 10*time.Second)
	s.Stop(t)
	if err := exec(dsn, `SELECT 1`, 5*time.Second); err == nil {
		t.Fatal("a stopped server answered")
	}
	s.Start(t)
	count(t, dsn, 2)

	s.Freeze(t)
	if err := exec(dsn, `SELECT 1`, 500*time.Millisecond); err == nil {
		t.Fatal("a frozen server answered")
	}
	s.Thaw(t)
	count(t, dsn, 2)

	sb := s.StartStandby(t)
	if err := exec(dsn, `SET synchronous_commit = off; INSERT INTO x VALUES (3)`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	sb.WaitReplayed(t, s, 30*time.Second)
	s.Stop(t)
	sb.Promote(t)
	if err := exec(sb.DSN("faults"), `INSERT INTO x VALUES (4)`, 10*time.Second); err != nil {
		t.Fatalf("write to the promoted standby: %v", err)
	}
	count(t, sb.DSN("faults"), 4)
}

func count(t *testing.T, dsn string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := queryRow(ctx, dsn, `SELECT count(*) FROM x`, &n); err != nil || n != want {
		t.Fatalf("count(*) = %d, %v; want %d", n, err, want)
	}
}
