package main

import (
	"encoding"
	"reflect"
	"strings"

	"github.com/mxpolicyd/mxpolicyd/config"
)

// needsRestart lists the config keys (and key prefixes, ending in '.')
// that a SIGHUP cannot apply: they are read once, when serve opens its
// listeners, database, metrics server, logger, whitelist poll and decision
// log writer (docs/configuration.md, "How the configuration is loaded").
// allowed_clients is among them because the policy server takes its
// networks at start.
var needsRestart = []string{
	"listen", "allowed_clients", "socket_mode", "max_connections",
	"idle_timeout", "read_timeout", "write_timeout",
	"max_line_bytes", "max_attributes", "max_request_bytes",
	"database", "auto_migrate", "hostname", "whitelist.refresh",
	"log.", "metrics.", "decision_log.",
}

// restartKeys names the keys that differ between the running config and
// next and need a restart. Only names: a value may be a secret (the DSN).
func restartKeys(running, next *config.Config) []string {
	var out []string
	for _, k := range changedKeys(reflect.ValueOf(*running), reflect.ValueOf(*next), "") {
		for _, r := range needsRestart {
			if k == r || strings.HasSuffix(r, ".") && strings.HasPrefix(k, r) {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

// changedKeys walks two values of one struct type by their yaml names and
// returns the dotted key of each field that differs. Values are compared
// as parsed at load, so "0660" and "660" are the same socket_mode; a
// struct that reads itself from text (policy.Action) is one value.
func changedKeys(a, b reflect.Value, prefix string) []string {
	if a.Kind() != reflect.Struct || a.Type().Implements(textMarshaler) {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{strings.TrimSuffix(prefix, ".")}
	}
	var out []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			// policy.ServerConfig: its keys are top-level.
			out = append(out, changedKeys(a.Field(i), b.Field(i), prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, changedKeys(a.Field(i), b.Field(i), prefix+name+".")...)
	}
	return out
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
