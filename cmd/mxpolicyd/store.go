package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/migrations"
)

// storeFlags is the --database flag the store commands share. create
// lets open make a new store: the imports, which fill one before the
// daemon first runs.
type storeFlags struct {
	database string
	create   bool
}

func (s *storeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.database, "database", "",
		"postgres:// URL or SQLite file path (key database; env "+config.EnvDatabase+")")
}

// load reads the config with --database applied.
func (s *storeFlags) load(g *globalOpts) (*config.Config, error) {
	cfg, err := config.Load(g.configPath, checkDefaults(), func(c *config.Config) {
		if s.database != "" {
			c.Database = s.database
		}
	})
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// open loads the config and opens its database, migrated. Unless create,
// the database must exist: serve and migrate create it.
func (s *storeFlags) open(ctx context.Context, g *globalOpts) (*config.Config, *db.DB, *slog.Logger, error) {
	cfg, err := s.load(g)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := mustExist(cfg.Database); err != nil && !s.create {
		return nil, nil, nil, usageError{err}
	}
	logger := cfg.Logger(os.Stderr)
	store, err := openStore(ctx, cfg, logger, cfg.AutoMigrate)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, store, logger, nil
}

// mustExist refuses an SQLite file that is not there. An admin command
// given a mistyped path would otherwise create, migrate and change an
// empty store that no daemon reads, and report success.
func mustExist(dsn string) error {
	if db.IsPostgresDSN(dsn) {
		return nil
	}
	path := db.SQLitePath(dsn)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("database %q does not exist (mxpolicyd serve and mxpolicyd migrate create it)", path)
	}
	return nil
}

// applyMigrations applies the pending migrations, logs each one applied,
// and returns their names: also those applied before one failed, each
// committed with its record, so the log and migrate's output say where the
// store stands. serve, the store commands and migrate all migrate
// through it.
func applyMigrations(ctx context.Context, store *db.DB, logger *slog.Logger) ([]string, error) {
	applied, err := migrations.Apply(ctx, store)
	for _, m := range applied {
		logger.Info("migration applied", "migration", m)
	}
	if err != nil {
		return applied, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}

func newMigrateCmd(g *globalOpts) *cobra.Command {
	s := &storeFlags{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations",
		Long: `Apply the versioned SQL migrations embedded in the binary. On PostgreSQL they
run under an advisory lock, so several hosts may start at once. serve does
this at start unless auto_migrate is false or --no-migrate is given.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := s.load(g)
			if err != nil {
				return err
			}
			store, err := openStore(cmd.Context(), cfg, cfg.Logger(os.Stderr), false)
			if err != nil {
				return err
			}
			defer store.Close()
			// The names go to stdout, the command's output, not to the log.
			applied, err := applyMigrations(cmd.Context(), store, slog.New(slog.DiscardHandler))
			for _, m := range applied {
				fmt.Fprintln(cmd.OutOrStdout(), "applied", m)
			}
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "database is up to date")
			}
			return nil
		},
	}
	s.add(cmd)
	return cmd
}

// openReadOnly opens what check needs without writing: the database
// read-only (a SQLite file must exist; a PostgreSQL session refuses
// writes), no migrations, and checks built in read-only mode.
func openReadOnly(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*wiring, func(), error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := db.OpenReadOnly(octx, cfg.Database, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("database %s: %w", db.Redact(cfg.Database), err)
	}
	w := newWiring(ctx, cfg, logger, store, nil, true)
	return w, func() { w.close(); store.Close() }, nil
}
