package config

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogLevel parses log.level.
func (c *Config) LogLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(c.Log.Level))); err != nil {
		return 0, fmt.Errorf("log.level: want debug, info, warn or error, got %q", c.Log.Level)
	}
	return l, nil
}

// Logger builds the logger log.format and log.level ask for.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	lvl, _ := c.LogLevel()
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
