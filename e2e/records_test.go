package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
)

// records returns the daemon's JSON log records with message msg so far,
// e.g. the greylist's "greylist key" debug records.
func (d *daemon) records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(d.log.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
