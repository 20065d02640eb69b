package migrations_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Both stores have the same versions, so a feature never exists on one only.
func TestSameVersionsForBothStores(t *testing.T) {
	pg, err := migrations.List(db.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	lite, err := migrations.List(db.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	names := func(ms []migrations.Migration) (out []string) {
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	if !slices.Equal(names(pg), names(lite)) {
		t.Fatalf("postgres %v vs sqlite %v", names(pg), names(lite))
	}
	if len(pg) == 0 || pg[0].Name != "0001_greylist" {
		t.Fatalf("first migration %v", names(pg))
	}
}

func stores(t *testing.T) map[string]func() string {
	return map[string]func() string{
		db.Postgres: func() string { return pgtest.New(t) },
		db.SQLite:   func() string { return filepath.Join(t.TempDir(), "mx.db") },
	}
}

func TestApplyThenUpToDate(t *testing.T) {
	for kind, dsn := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := ctxT(t)
			d, err := db.Open(ctx, dsn(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			all, _ := migrations.List(kind)
			pending, err := migrations.Pending(ctx, d)
			if err != nil || len(pending) != len(all) {
				t.Fatalf("fresh database: pending %v, %v; want all %d", pending, err, len(all))
			}
			applied, err := migrations.Apply(ctx, d)
			if err != nil || len(applied) != len(all) {
				t.Fatalf("first Apply: %v, %v", applied, err)
			}
			applied, err = migrations.Apply(ctx, d)
			if err != nil || len(applied) != 0 {
				t.Fatalf("second Apply: %v, %v; want nothing", applied, err)
			}
			st, err := migrations.Status(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range st {
				if !s.Applied || s.AppliedAt.IsZero() {
					t.Errorf("%s not recorded as applied: %+v", s.Name, s)
				}
			}
		})
	}
}

// Several daemons starting at once on one database: every migration runs
// exactly once and nobody fails.
func TestConcurrentApply(t *testing.T) {
	for kind, dsn := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := ctxT(t)
			target := dsn()
			const hosts = 6
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				total []string
			)
			for i := 0; i < hosts; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d, err := db.Open(ctx, target, nil)
					if err != nil {
						t.Error(err)
						return
					}
					defer d.Close()
					applied, err := migrations.Apply(ctx, d)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					total = append(total, applied...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			all, _ := migrations.List(kind)
			slices.Sort(total)
			var want []string
			for _, m := range all {
				want = append(want, m.Name)
			}
			if !slices.Equal(total, want) {
				t.Fatalf("applied across hosts %v, want each of %v exactly once", total, want)
			}
		})
	}
}
