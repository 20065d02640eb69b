package whitelist

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/mxpolicyd/mxpolicyd/internal/quote"
)

// Format is the syntax of a list file.
type Format string

const (
	// FormatClients is postgrey's whitelist_clients: one per line an IPv4
	// address, partial IPv4 ("192.0.2"), IPv4 or IPv6 prefix, IPv6 address,
	// host name (it and its subdomains) or /regex/ on the host name.
	FormatClients Format = "clients"
	// FormatRecipients is postgrey's whitelist_recipients: user@domain,
	// user@, domain or /regex/.
	FormatRecipients Format = "recipients"
	// FormatSenders has the whitelist_recipients syntax, for senders.
	FormatSenders Format = "senders"
)

// ParseFormat accepts a format name; "postgrey-clients" and friends too.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.TrimPrefix(strings.ToLower(s), "postgrey-")); f {
	case FormatClients, FormatRecipients, FormatSenders:
		return f, nil
	}
	return "", fmt.Errorf("whitelist: unknown format %s (want clients, recipients or senders)", quote.Short(s))
}

// maxErrors caps how many bad lines one error lists.
const maxErrors = 10

// maxLine is the longest line a list file may have: far above any value
// (maxValueLen) with its comment.
const maxLine = 64 * 1024

// readFile parses one list file; errors name file:line.
func readFile(path string, f Format) ([]Entry, error) {
	fh, err := openList(path)
	if err != nil {
		return nil, fmt.Errorf("whitelist: %w", err)
	}
	defer fh.Close()
	return parseList(fh, path, f)
}

// openList opens a list file, refusing a named pipe or a socket: the
// daemon reads its lists at start and again on every reload, and a pipe
// with no writer would hold that read for good (fifo(7)). It opens
// without blocking (O_NONBLOCK: open(2) of a FIFO then returns at once)
// and checks the file it got, not the path.
func openList(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) != 0 {
		err = &fs.PathError{Op: "open", Path: path, Err: errors.New("a named pipe or socket, not a file: it may never end")}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// parseList parses a whole list and reports every bad line (up to
// maxErrors), so one run fixes a file. Each entry's comment is the comment
// on its line or else the comment block just above it: that is where
// postgrey's shipped list says why a host is there.
func parseList(r io.Reader, name string, f Format) ([]Entry, error) {
	var (
		out   []Entry
		errs  []error
		block string
		num   int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		num++
		text, comment := splitComment(sc.Text())
		switch {
		case text == "" && comment == "":
			block = ""
			continue
		case text == "":
			if block == "" {
				block = comment
			}
			continue
		}
		if comment == "" {
			comment = block
		}
		e, err := parseLine(f, text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, num, err))
			if len(errs) == maxErrors {
				break
			}
			continue
		}
		e.Comment, e.Source = comment, fmt.Sprintf("%s:%d", name, num)
		out = append(out, e)
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		errs = append(errs, invalidError{fmt.Errorf("%s:%d: a line longer than %d bytes", name, num+1, maxLine)})
	case err != nil:
		errs = append(errs, fmt.Errorf("%s:%d: %w", name, num+1, err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("whitelist: %w", errors.Join(errs...))
	}
	return out, nil
}

// splitComment cuts a "#" comment that starts the line or follows a blank;
// a "#" inside a value (a regex) is kept. Tabs in the comment become
// spaces: they are layout in a file, and a control character in a stored
// comment (which `whitelist list` prints in a column) is refused.
func splitComment(s string) (text, comment string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return strings.TrimSpace(s[:i]), strings.ReplaceAll(strings.TrimSpace(s[i+1:]), "\t", " ")
		}
	}
	return strings.TrimSpace(s), ""
}

// parseLine turns one value into an entry of the kind the format implies.
func parseLine(f Format, text string) (Entry, error) {
	if strings.ContainsAny(text, " \t") {
		return Entry{}, fmt.Errorf("%q: one value per line", text)
	}
	k := Recipient
	switch f {
	case FormatClients:
		k = clientKind(text)
	case FormatSenders:
		k = Sender
	}
	p, err := parseValue(k, text)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Kind: k, Value: p.key, pat: p}, nil
}

// clientKind classifies a whitelist_clients line the way postgrey does:
// digits and dots (with an optional /len), or anything with a colon, is an
// address; everything else is a host name or a regex.
func clientKind(s string) Kind {
	if strings.HasPrefix(s, "/") {
		return ClientName
	}
	if strings.Contains(s, ":") {
		return Client
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == '/') {
			return ClientName
		}
	}
	return Client
}
