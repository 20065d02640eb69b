package main

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Output helpers the commands that print rows share.

// writeJSON writes rows as an indented JSON array; no rows is [], not
// null, so a script can always iterate over the output.
func writeJSON[T any](w io.Writer, rows []T) error {
	if rows == nil {
		rows = []T{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// printable returns s as it is when every character prints, else quoted and
// escaped like a Go string literal (strconv.Quote). Values and comments are
// refused with control characters, but a row written by hand in SQL, or
// before that rule, must not move the cursor or forge lines and columns in
// this output. A leading quote is escaped too, so quoted output is never
// ambiguous.
func printable(s string) string {
	odd := func(r rune) bool { return !strconv.IsPrint(r) }
	if strings.HasPrefix(s, `"`) || !utf8.ValidString(s) || strings.IndexFunc(s, odd) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
