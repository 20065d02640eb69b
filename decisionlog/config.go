package decisionlog

import (
	"fmt"
	"time"
)

// Config is the `decision_log:` section. Durations are YAML strings ("1s").
type Config struct {
	// Enabled records every decision in the decisions table. Default true:
	// the reports and "why was this mail deferred?" need it, and it costs
	// the reply nothing (rows are written in batches off the reply path).
	Enabled bool `yaml:"enabled"`
	// QueueSize is how many rows may wait for the writer. Default 10000:
	// ten seconds of a busy MX at 1,000 decisions a second, so a database
	// that pauses for a few seconds loses nothing; beyond that rows are
	// dropped and counted rather than held in memory without bound.
	QueueSize int `yaml:"queue_size"`
	// BatchSize is the most rows written in one batch. Default 500: large
	// enough that one COPY (PostgreSQL) makes a row cost microseconds. On
	// SQLite a batch goes in multi-row INSERTs, in one transaction, or in
	// transactions of at most 64 rows while greylisting waits for the
	// store's single connection, which it shares, so that it waits a few
	// milliseconds at most (sqliteLog.insert).
	BatchSize int `yaml:"batch_size"`
	// FlushInterval is how long a row may wait for its batch to fill.
	// Default 1s, so `mxpolicyd report` and ad-hoc queries see decisions
	// almost at once.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// WriteTimeout bounds one batch write, its retries included
	// (Writer.insertRetrying); a batch that misses it is dropped and
	// counted. Default 5s: half the queue's worth of time at
	// 1,000 decisions a second, so a slow database costs rows, not memory.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Retention is how long rows are kept; `mxpolicyd gc` removes older
	// ones. Default 720h (30 days): a month of reports, at a size a busy
	// MX (a million decisions a day) keeps in a few gigabytes.
	Retention time.Duration `yaml:"retention"`
	// PartitionsAhead is how many daily partitions beyond today the
	// PostgreSQL store keeps ready. Default 3, so a daemon running over a
	// long weekend without gc still writes into real partitions rather
	// than the default one. Ignored by SQLite.
	PartitionsAhead int `yaml:"partitions_ahead"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Enabled:         true,
		QueueSize:       10000,
		BatchSize:       500,
		FlushInterval:   time.Second,
		WriteTimeout:    5 * time.Second,
		Retention:       30 * 24 * time.Hour,
		PartitionsAhead: 3,
	}
}

// Validate checks every key, naming it in the error.
func (c Config) Validate() error {
	if err := intIn("decision_log.queue_size", c.QueueSize, 1, 1_000_000); err != nil {
		return err
	}
	if err := intIn("decision_log.batch_size", c.BatchSize, 1, 10_000); err != nil {
		return err
	}
	if c.BatchSize > c.QueueSize {
		return fmt.Errorf("decision_log.batch_size: must not exceed decision_log.queue_size (%d), got %d",
			c.QueueSize, c.BatchSize)
	}
	if err := durationIn("decision_log.flush_interval", c.FlushInterval, 10*time.Millisecond, time.Minute); err != nil {
		return err
	}
	if err := durationIn("decision_log.write_timeout", c.WriteTimeout, 100*time.Millisecond, time.Minute); err != nil {
		return err
	}
	// Partitions are whole days: less than a day of retention would drop
	// today's partition while it is being written.
	if err := durationIn("decision_log.retention", c.Retention, 24*time.Hour, 3650*24*time.Hour); err != nil {
		return err
	}
	return intIn("decision_log.partitions_ahead", c.PartitionsAhead, 1, 31)
}

func intIn(key string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s: must be between %d and %d, got %d", key, lo, hi, v)
	}
	return nil
}

func durationIn(key string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("%s: must be between %s and %s, got %q", key, lo, hi, d)
	}
	return nil
}
