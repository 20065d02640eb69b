package importer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
)

// PostgreyOptions describe the postgrey whose files are read: the options
// it ran with decide what its keys and values mean (postgrey's script,
// smtpd_access_policy and do_client_substitutions).
type PostgreyOptions struct {
	Options
	// Delay is postgrey's --delay (default 300 s): a triplet whose last
	// sighting is at least Delay after its first has passed.
	Delay time.Duration
	// IPv4CIDR and IPv6CIDR are postgrey's --ipv4cidr and --ipv6cidr
	// (24, 64), or 32 and 128 with --lookup-by-host: the size of the
	// network its triplet keys name by its first address.
	IPv4CIDR, IPv6CIDR int
	// DBDump is the db_dump program for .db files; "" looks for db_dump,
	// then db5.3_dump (Debian's db-util and db5.3-util).
	DBDump string
}

// Postgrey reads postgrey's triplet database (postgrey.db) and client
// auto-whitelist (postgrey_clients.db). A file whose name ends in .db is
// dumped with `db_dump -p`; any other is read as db_dump -p output
// (db_dump(1)). A file is the auto-whitelist when its name contains
// "clients", as postgrey names it.
//
// postgrey's keys, from its script: a triplet is
// lc("CLIENT/SENDER/RECIPIENT") with value "FIRST,LAST[,HOST]" (Unix
// seconds), CLIENT the first address of the client's network; an
// auto-whitelisted client is its full address with value "COUNT,LAST".
// With --privacy both keys are SHA-1 hex digests, which cannot be mapped
// back: they are skipped and counted.
func Postgrey(ctx context.Context, files []string, opt PostgreyOptions) (greylist.ImportSet, Report, error) {
	if opt.Delay <= 0 || opt.IPv4CIDR < 1 || opt.IPv4CIDR > 32 || opt.IPv6CIDR < 1 || opt.IPv6CIDR > 128 {
		return greylist.ImportSet{}, Report{}, fmt.Errorf("importer: postgrey options: delay %v, ipv4cidr %d, ipv6cidr %d out of range",
			opt.Delay, opt.IPv4CIDR, opt.IPv6CIDR)
	}
	c := newCollector(opt.Options)
	for _, f := range files {
		text, err := dumpText(ctx, f, opt.DBDump)
		if err != nil {
			return greylist.ImportSet{}, Report{}, err
		}
		read, form := c.postgreyTriplet, "FIRST,LAST"
		if strings.Contains(filepath.Base(f), "clients") {
			read, form = c.postgreyClient, "COUNT,LAST"
		}
		err = readDump(bytes.NewReader(text), f, func(line int, key, value string) error {
			a, b, ok := twoInts(value)
			if !ok {
				return lineError(f, line, "value %q is not %s", value, form)
			}
			if sha1Hex.MatchString(key) {
				c.rep.skip(SkipHashed)
				return nil
			}
			return read(opt, f, line, key, a, b)
		})
		if err != nil {
			return greylist.ImportSet{}, Report{}, err
		}
	}
	set, rep := c.result()
	return set, rep, nil
}

// dumpText is the db_dump -p text of path: dumped by db_dump for a .db
// file, else the file itself.
func dumpText(ctx context.Context, path, prog string) ([]byte, error) {
	if !strings.HasSuffix(path, ".db") {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("importer: %w", err)
		}
		return b, nil
	}
	if prog == "" {
		prog = "db_dump"
		if _, err := exec.LookPath(prog); err != nil {
			prog = "db5.3_dump"
		}
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("importer: %w", err)
	}
	// postgrey keeps its files in a transactional environment (postgrey's
	// pre_loop_hook: BerkeleyDB::Env with DB_INIT_TXN and DB_INIT_LOG): a
	// committed change may be only in the environment's log and cache until
	// a checkpoint, so the file alone can lack it. db_dump -h joins the
	// environment and reads through it (db_dump(1)).
	args := []string{"-p", path}
	if dir := filepath.Dir(path); fileExists(filepath.Join(dir, "__db.001")) {
		args = []string{"-p", "-h", dir, filepath.Base(path)}
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("importer: %s -p %s: %w: %s (install Debian's db-util, or give a file dumped with db_dump -p)",
			prog, path, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// readDump calls fn with each key and value of `db_dump -p` output: after
// the header (up to HEADER=END) key and value lines alternate until
// DATA=END, each starting with a space, with "\\" for a backslash and
// "\hh" for a byte that does not print (db_dump(1), -p).
func readDump(r io.Reader, name string, fn func(line int, key, value string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	n, inData, ended := 0, false, false
	var key string
	keyLine := 0
	for sc.Scan() {
		n++
		l := sc.Text()
		switch {
		case !inData:
			inData = l == "HEADER=END"
			if !inData && !strings.Contains(l, "=") {
				return lineError(name, n, "not db_dump -p output (no header)")
			}
			continue
		case l == "DATA=END":
			if keyLine != 0 {
				return lineError(name, keyLine, "key without a value")
			}
			ended = true
			inData = false
			continue
		case !strings.HasPrefix(l, " "):
			return lineError(name, n, "data line does not start with a space")
		}
		text, err := unescapeDump(l[1:])
		if err != nil {
			return lineError(name, n, "%v", err)
		}
		if keyLine == 0 {
			key, keyLine = text, n
			continue
		}
		if err := fn(keyLine, key, text); err != nil {
			return err
		}
		keyLine = 0
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("importer: %s: %w", name, err)
	}
	if !ended {
		return fmt.Errorf("importer: %s: no DATA=END: truncated or not db_dump -p output", name)
	}
	return nil
}

func unescapeDump(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			b.WriteByte('\\')
			i++
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape at the end of %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape %q", s[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

var sha1Hex = regexp.MustCompile(`^[0-9a-f]{40}$`)

// twoInts reads postgrey's "A,B[,...]" values.
func twoInts(v string) (int64, int64, bool) {
	parts := strings.Split(v, ",")
	if len(parts) < 2 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseInt(parts[0], 10, 64)
	b, err2 := strconv.ParseInt(parts[1], 10, 64)
	return a, b, err1 == nil && err2 == nil && a >= 0 && b >= 0
}

// postgreyTriplet reads one key of postgrey.db, not hashed, with the
// FIRST,LAST of its value. The client is up to the first "/", the
// recipient after the last: a recipient never holds a "/" (Postfix sends
// it canonical), a sender rarely. With --lookup-by-host postgrey keys by
// the NetAddr::IP object itself, which prints with its prefix length
// (do_client_substitutions: "192.0.2.7/32/sender/recipient"): that
// length, the whole address's, is part of the client.
func (c *collector) postgreyTriplet(opt PostgreyOptions, name string, line int, key string, first, last int64) error {
	client, rest, ok1 := strings.Cut(key, "/")
	addr, err := netip.ParseAddr(client)
	whole := err == nil && (addr.Unmap().Is4() && opt.IPv4CIDR == 32 || !addr.Unmap().Is4() && opt.IPv6CIDR == 128)
	if bits, after, ok := strings.Cut(rest, "/"); ok && whole && bits == strconv.Itoa(addr.BitLen()) {
		rest = after
	}
	i := strings.LastIndexByte(rest, '/')
	if !ok1 || i < 0 || err != nil || rest[i+1:] == "" {
		return lineError(name, line, "key %q is not CLIENT/SENDER/RECIPIENT (is this postgrey_clients.db?)", key)
	}
	bits := opt.IPv6CIDR
	if addr.Unmap().Is4() {
		bits = opt.IPv4CIDR
	}
	nw, ok := c.network(addr, bits)
	if !ok {
		return nil
	}
	sender := rest[:i]
	t := greylist.ImportTriplet{Net: nw, Addr: addr.Unmap(), Sender: greylist.Normalize(sender), RawSender: sender,
		Recipient: strings.ToLower(rest[i+1:]), FirstSeen: time.Unix(first, 0), LastSeen: time.Unix(last, 0)}
	if !nw.Contains(t.Addr) {
		t.Addr = nw.Addr()
	}
	// postgrey's own test (smtpd_access_policy, do_maintenance): a triplet
	// passed when it was seen at least --delay after its first attempt.
	// When exactly is unknown; the earliest instant it could have is kept.
	if time.Duration(last-first)*time.Second >= opt.Delay {
		t.PassedAt = t.FirstSeen.Add(opt.Delay)
	}
	c.triplet(t)
	return nil
}

// postgreyClient reads one key of postgrey_clients.db, not hashed, with
// the COUNT,LAST of its value.
func (c *collector) postgreyClient(_ PostgreyOptions, name string, line int, key string, count, last int64) error {
	addr, err := netip.ParseAddr(key)
	if err != nil {
		return lineError(name, line, "key %q is not a client address (is this postgrey.db?)", key)
	}
	addr = addr.Unmap()
	nw, ok := c.network(addr, addr.BitLen())
	if !ok {
		return nil
	}
	at := time.Unix(last, 0)
	c.client(greylist.ImportClient{Net: nw, Addr: addr, Passes: int(min(count, 1<<20)), FirstSeen: at, LastSeen: at})
	return nil
}
