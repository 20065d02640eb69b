package decisionlog

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// BenchmarkInsert measures one batch write of BatchSize (500) rows, the
// writer's unit of work; rows/s is the most a daemon can log. Each batch
// is later than the one before, as a daemon's are: rows that went back in
// time would land amid the time index and write pages all over it, which
// a daemon's never do.
//
//	go test -run '^$' -bench Insert ./decisionlog/
func BenchmarkInsert(b *testing.B) {
	for _, kind := range []string{db.Postgres, db.SQLite} {
		b.Run(kind, func(b *testing.B) {
			d := dbtest.Open(b, kind)
			ctx := dbtest.Context(b)
			if _, err := EnsurePartitions(ctx, d, t0, 1); err != nil {
				b.Fatal(err)
			}
			batch := make([]Row, DefaultConfig().BatchSize)
			for i := range batch {
				batch[i] = FromDecision(decision(i), "mx1")
			}
			b.ResetTimer()
			for n := range b.N {
				for i := range batch {
					batch[i].Time = t0.Add(time.Duration(n) * time.Millisecond)
				}
				if err := Insert(ctx, d, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkRecord is what the reply path pays per decision: building the
// row and a non-blocking send (rows the writer cannot keep up with are
// dropped, which costs the same).
func BenchmarkRecord(b *testing.B) {
	d := dbtest.Open(b, db.SQLite)
	w := New(d, DefaultConfig(), Options{Tick: make(chan time.Time)})
	defer w.Close(dbtest.Context(b))
	dec := decision(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w.Record(dec)
	}
}
