package main

import (
	"encoding"
	"reflect"
	"slices"
	"strings"

	"github.com/mxpolicyd/mxpolicyd/config"
)

// needsRestart lists the config keys (and key prefixes, ending in '.')
// that a SIGHUP cannot apply: they are read once, when serve opens its
// listeners, database, metrics server, logger, whitelist poll and decision
// log writer (docs/configuration.md, "How the configuration is loaded").
// allowed_clients is among them because the policy server takes its
// networks at start; hostname because the decision log's writer names its
// rows with it, and a reload must not make the headers disagree.
var needsRestart = []string{
	"listen", "allowed_clients", "socket_mode", "max_connections",
	"idle_timeout", "read_timeout", "write_timeout",
	"max_line_bytes", "max_attributes", "max_request_bytes",
	"database", "auto_migrate", "hostname", "whitelist.refresh",
	"log.", "metrics.", "decision_log.",
}

// reloadable are the keys under needsRestart's prefixes that a reload
// does apply: gc reads them from the running config at each run.
var reloadable = []string{"decision_log.retention"}

// restartOnly reports whether key k needs a restart.
func restartOnly(k string) bool {
	if slices.Contains(reloadable, k) {
		return false
	}
	for _, r := range needsRestart {
		if k == r || strings.HasSuffix(r, ".") && strings.HasPrefix(k, r) {
			return true
		}
	}
	return false
}

// restartKeys names the keys that differ between the running config and
// next and need a restart. Only names: a value may be a secret (the DSN).
func restartKeys(running, next *config.Config) []string {
	var out []string
	eachKey(reflect.ValueOf(*running), reflect.ValueOf(*next), "", func(k string, a, b reflect.Value) {
		if restartOnly(k) && !reflect.DeepEqual(a.Interface(), b.Interface()) {
			out = append(out, k)
		}
	})
	return out
}

// keepRunning gives next the running values of every key that needs a
// restart, so a reload applies only what it says it does: the steps it
// builds and the config it stores keep the running hostname, auto_migrate,
// decision_log settings and the rest.
func keepRunning(running, next *config.Config) {
	eachKey(reflect.ValueOf(running).Elem(), reflect.ValueOf(next).Elem(), "", func(k string, a, b reflect.Value) {
		if restartOnly(k) {
			b.Set(a)
		}
	})
}

// eachKey calls f with the dotted yaml key of each leaf of two values of
// one struct type, and the two values there: a field that is not a
// struct, or a struct that reads itself from text.
func eachKey(a, b reflect.Value, prefix string, f func(k string, a, b reflect.Value)) {
	if a.Kind() != reflect.Struct || a.Type().Implements(textMarshaler) {
		f(strings.TrimSuffix(prefix, "."), a, b)
		return
	}
	for i := range a.NumField() {
		field := a.Type().Field(i)
		name, opts, _ := strings.Cut(field.Tag.Get("yaml"), ",")
		if !field.IsExported() || name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			// policy.ServerConfig: its keys are top-level.
			eachKey(a.Field(i), b.Field(i), prefix, f)
			continue
		}
		if name == "" {
			name = strings.ToLower(field.Name)
		}
		eachKey(a.Field(i), b.Field(i), prefix+name+".", f)
	}
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
