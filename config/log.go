package config

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/mxpolicyd/mxpolicyd/internal/quote"
	"github.com/mxpolicyd/mxpolicyd/internal/textlog"
)

// Level is log.level: debug, info, warn or error, in any case. It prints
// in lower case, as the config file writes it.
type Level slog.Level

// UnmarshalText parses one of the four level names, in any case. slog's
// own parser also takes offsets ("info+2", "debug-8"), which the docs do
// not offer and a typo could make.
func (l *Level) UnmarshalText(b []byte) error {
	var v slog.Level
	switch strings.ToLower(string(b)) {
	case "debug":
		v = slog.LevelDebug
	case "info":
		v = slog.LevelInfo
	case "warn":
		v = slog.LevelWarn
	case "error":
		v = slog.LevelError
	default:
		return fmt.Errorf("want debug, info, warn or error, got %s", quote.Short(string(b)))
	}
	*l = Level(v)
	return nil
}

// MarshalText renders the level in lower case, e.g. "info".
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

func (l Level) String() string { return strings.ToLower(slog.Level(l).String()) }

// Level makes a Level a slog.Leveler.
func (l Level) Level() slog.Level { return slog.Level(l) }

// Logger builds the logger log.format and log.level ask for.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Log.Level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(textlog.New(w, opts)) // slog's text format, faster for decision lines
}
