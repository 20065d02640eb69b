package whitelist

import (
	"fmt"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Entry is one whitelist entry, from a file or the database.
type Entry struct {
	ID        int64 // database row id; 0 for file and default entries
	Kind      Kind
	Value     string // canonical form (see Normalize)
	Comment   string
	CreatedBy string
	CreatedAt time.Time // zero for file entries
	Expires   time.Time // zero: never; otherwise ignored from this instant on
	Source    string    // "path:line", "database" or "default role_recipients"

	pat    pattern
	bypass policy.CheckSet
}

// Bypasses returns the checks this entry exempts a request from.
func (e *Entry) Bypasses() policy.CheckSet {
	if e.bypass != nil {
		return e.bypass
	}
	return e.Kind.Bypasses()
}

// live reports whether the entry applies at now.
func (e *Entry) live(now time.Time) bool {
	return e.Expires.IsZero() || now.Before(e.Expires)
}

// String describes the entry for logs: `client 192.0.2.0/24 (/etc/x:12)`.
func (e *Entry) String() string {
	src := e.Source
	if e.ID != 0 {
		src = fmt.Sprintf("database id %d", e.ID)
		if e.CreatedBy != "" {
			src += " by " + e.CreatedBy
		}
	}
	return fmt.Sprintf("%s %s (%s)", e.Kind, e.Value, src)
}

// Match is what matched one request: at most one entry per kind.
type Match struct {
	Entries []*Entry
	Skip    policy.CheckSet // union of the entries' bypasses
}

// String joins the entries' descriptions, for Facts.Whitelist and logs.
func (m Match) String() string {
	parts := make([]string, len(m.Entries))
	for i, e := range m.Entries {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

func (m *Match) add(e *Entry) {
	if e == nil {
		return
	}
	m.Entries = append(m.Entries, e)
	names := make([]string, 0, 2)
	for name := range e.Bypasses() {
		names = append(names, name)
	}
	m.Skip = m.Skip.With(names...)
}
