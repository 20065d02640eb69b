//go:build tools

// Package tools pins the modules the project depends on before every
// package imports them, so that go.mod is complete from the first commit.
package tools

import (
	_ "blitiri.com.ar/go/spf"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/sync/singleflight"
	_ "modernc.org/sqlite"
)
