// Package migrations holds mxpolicyd's versioned schema, embedded in the
// binary, and applies it. Files are named
// NNNN_name.sql, one directory per store kind with the same versions and the
// same behaviour; what both kinds write alike (the reporting views) is one
// file in shared/ that a migration of each kind includes (List). Each
// migration runs in its own transaction and is recorded in
// schema_migrations. On PostgreSQL the whole run holds an advisory lock, so
// several hosts starting at once apply each migration exactly once.
//
// The runner is written here rather than taken from a migration library: it
// is short, and it works on our db.DB (pgx and database/sql) directly.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

//go:embed postgres/*.sql sqlite/*.sql shared/*.sql
var files embed.FS

// Migration is one versioned SQL file.
type Migration struct {
	Version int    // from the NNNN prefix
	Name    string // "0001_greylist"
	SQL     string
}

// State is a migration and whether the database has it.
type State struct {
	Migration
	Applied   bool
	AppliedAt time.Time
}

var fileName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// List returns the migrations for a store kind (db.Postgres or
// db.SQLite) in version order. A migration file is a text/template: it may
// include a shared/ file with {{template "name.sql"}}, rendered with the
// kind's dialect (sqlFuncs in runner.go) where the two write a thing
// differently. The rendered text is what runs.
func List(kind string) ([]Migration, error) {
	ents, err := fs.ReadDir(files, kind)
	if err != nil {
		return nil, fmt.Errorf("migrations: no migrations for store kind %q: %w", kind, err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range ents {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrations: %s/%s is not named NNNN_name.sql", kind, e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations: %s: version %d used by %s and %s", kind, v, prev, e.Name())
		}
		seen[v] = e.Name()
		body, err := render(kind, e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrations: %s/%s: %w", kind, e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name()[:len(e.Name())-4], SQL: body})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// render executes the migration file kind/name with the shared/ files and
// the kind's dialect functions.
func render(kind, name string) (string, error) {
	t, err := template.New(name).Funcs(dialectFor(kind).sqlFuncs()).
		ParseFS(files, path.Join(kind, name), "shared/*.sql")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, name, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Apply runs every migration the database lacks, in order, and returns
// the names of those it applied. It is safe to call from several processes
// at once.
func Apply(ctx context.Context, d *db.DB) ([]string, error) {
	ms, err := List(d.Kind())
	if err != nil {
		return nil, err
	}
	applied, err := apply(ctx, d, ms)
	if err != nil {
		return applied, fmt.Errorf("migrations: %w", err)
	}
	return applied, nil
}

// Status lists every known migration and whether it is applied.
func Status(ctx context.Context, d *db.DB) ([]State, error) {
	ms, err := List(d.Kind())
	if err != nil {
		return nil, err
	}
	done := map[int]time.Time{}
	if err := dialectFor(d.Kind()).applied(ctx, d, done); err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	st := make([]State, len(ms))
	for i, m := range ms {
		at, ok := done[m.Version]
		st[i] = State{Migration: m, Applied: ok, AppliedAt: at}
	}
	return st, nil
}

// Pending returns the names of the migrations not yet applied; serve can
// refuse to start on an outdated schema when auto-migration is off.
func Pending(ctx context.Context, d *db.DB) ([]string, error) {
	st, err := Status(ctx, d)
	if err != nil {
		return nil, err
	}
	var p []string
	for _, s := range st {
		if !s.Applied {
			p = append(p, s.Name)
		}
	}
	return p, nil
}
