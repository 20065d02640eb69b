package contrib

import (
	"bufio"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// clamconf loads both ClamAV files with ClamAV's own parser and returns
// every effective setting. clamconf exits 0 even on a parse error, so its
// ERROR and WARNING lines are what fail the test.
func clamconf(t *testing.T) map[string]map[string]string {
	t.Helper()
	bin := need(t, "clamconf", "clamav")
	dir := t.TempDir()
	for _, f := range []string{"clamd.conf", "clamav-milter.conf"} {
		copyFile(t, filepath.Join("clamav", f), filepath.Join(dir, f))
	}
	out, stderr, err := run(t, bin, "-c", dir)
	if err != nil {
		t.Fatalf("clamconf: %v\n%s", err, stderr)
	}
	conf := map[string]map[string]string{}
	var file string
	sc := bufio.NewScanner(strings.NewReader(out + stderr))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "WARNING") {
			t.Errorf("clamconf: %s", line)
		}
		if f, ok := strings.CutPrefix(line, "Config file: "); ok {
			file = f
			conf[file] = map[string]string{}
			continue
		}
		if file == "" {
			continue
		}
		if k, v, ok := strings.Cut(line, " = "); ok {
			conf[file][k] = strings.Trim(v, `"`)
		} else if k, ok := strings.CutSuffix(line, " disabled"); ok {
			conf[file][k] = "disabled"
		}
	}
	return conf
}

func TestClamAVConfigs(t *testing.T) {
	conf := clamconf(t)
	clamd, milter := conf["clamd.conf"], conf["clamav-milter.conf"]
	for _, c := range []struct {
		file, key, want string
		got             map[string]string
	}{
		{"clamd.conf", "TCPAddr", "127.0.0.1", clamd},
		{"clamd.conf", "TCPSocket", "3310", clamd},
		{"clamd.conf", "LocalSocket", "disabled", clamd},
		{"clamd.conf", "Foreground", "yes", clamd},
		{"clamav-milter.conf", "MilterSocket", "inet:7357@127.0.0.1", milter},
		{"clamav-milter.conf", "OnInfected", "Reject", milter},
		{"clamav-milter.conf", "OnFail", "Defer", milter},
		{"clamav-milter.conf", "OnClean", "Accept", milter},
	} {
		if got := c.got[c.key]; got != c.want {
			t.Errorf("%s: %s = %q, want %q", c.file, c.key, got, c.want)
		}
	}
	// The milter must reach the clamd that this clamd.conf starts.
	if got, want := milter["ClamdSocket"], "tcp:"+clamd["TCPAddr"]+":"+clamd["TCPSocket"]; got != want {
		t.Errorf("clamav-milter ClamdSocket = %q, clamd listens on %q", got, want)
	}
	// A message larger than clamd's stream limit would be truncated and
	// scanned in part; the milter must skip it first.
	stream, _ := strconv.Atoi(clamd["StreamMaxLength"])
	if max, _ := strconv.Atoi(milter["MaxFileSize"]); max == 0 || max > stream {
		t.Errorf("milter MaxFileSize %d must be set and at most clamd StreamMaxLength %d", max, stream)
	}
}

// postfixMilter is the smtpd_milters value for clamav-milter.conf's
// MilterSocket: "inet:PORT@HOST" in ClamAV, "inet:HOST:PORT" in Postfix.
func postfixMilter(t *testing.T) string {
	t.Helper()
	sock := clamconf(t)["clamav-milter.conf"]["MilterSocket"]
	port, host, ok := strings.Cut(strings.TrimPrefix(sock, "inet:"), "@")
	if !ok {
		t.Fatalf("MilterSocket %q is not inet:PORT@HOST", sock)
	}
	return "inet:" + host + ":" + port
}
