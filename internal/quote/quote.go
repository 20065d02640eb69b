// Package quote prints a value someone typed back in an error message:
// escaped, so no control byte reaches a terminal or a log, and short, so
// a 100 KB argument costs one line, not a screenful.
package quote

import "strconv"

// max is how much of a value Short keeps: enough to recognise it.
const max = 64

// Short is s quoted (strconv.Quote) and, past max bytes, cut with "...".
func Short(s string) string {
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
