package contrib

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type cronEntry struct {
	fields        []string
	user, command string
	redirect      string // the command's shell redirections, if any
}

// cronEntries parses contrib/cron/mxpolicyd-gc as crontab(5) for
// /etc/cron.d: five time fields, a user, a command and its redirections.
func cronEntries(t *testing.T) []cronEntry {
	t.Helper()
	const path = "cron/mxpolicyd-gc"
	text := readFile(t, path)
	if !strings.HasSuffix(text, "\n") {
		t.Fatalf("%s: cron ignores a last line without a newline", path)
	}
	var out []cronEntry
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || envLine.MatchString(line) {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 7 {
			t.Fatalf("%s:%d: want 5 time fields, user, command: %q", path, n+1, line)
		}
		if err := checkCronTime(f[:5]); err != nil {
			t.Fatalf("%s:%d: %v", path, n+1, err)
		}
		cmd := f[6:]
		i := slices.IndexFunc(cmd, func(a string) bool { return strings.ContainsRune(a, '>') })
		if i < 0 {
			i = len(cmd)
		}
		out = append(out, cronEntry{f[:5], f[5], strings.Join(cmd[:i], " "), strings.Join(cmd[i:], " ")})
	}
	if len(out) == 0 {
		t.Fatalf("%s: no entries", path)
	}
	return out
}

var envLine = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\s*=`)

var cronRanges = [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}

// checkCronTime accepts the numeric forms: *, N, N-M, and /step on either.
func checkCronTime(fields []string) error {
	for i, f := range fields {
		for _, part := range strings.Split(f, ",") {
			base, step, hasStep := strings.Cut(part, "/")
			if hasStep {
				if n, err := strconv.Atoi(step); err != nil || n < 1 {
					return fmt.Errorf("field %d: bad step in %q", i+1, f)
				}
			}
			if base == "*" {
				continue
			}
			lo, hi, isRange := strings.Cut(base, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			r := cronRanges[i]
			if err1 != nil || err2 != nil || a < r[0] || b > r[1] || a > b {
				return fmt.Errorf("field %d: %q outside %d-%d", i+1, f, r[0], r[1])
			}
		}
	}
	return nil
}

func TestCron(t *testing.T) {
	for _, e := range cronEntries(t) {
		checkCommand(t, "cron", strings.Fields(e.command))
		// cron mails any output: gc's summary would make a mail an hour,
		// so only its errors (stderr) may reach MAILTO.
		if e.redirect != ">/dev/null" {
			t.Errorf("cron: %q redirects %q, want >/dev/null", e.command, e.redirect)
		}
	}
	for _, bad := range [][]string{{"60", "*", "*", "*", "*"}, {"*", "24", "*", "*", "*"}, {"*/0", "*", "*", "*", "*"}, {"x", "*", "*", "*", "*"}} {
		if checkCronTime(bad) == nil {
			t.Errorf("checkCronTime(%q) accepted a bad field", bad)
		}
	}
}
