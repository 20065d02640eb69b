package postfixtest

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EICAR is the EICAR anti-virus test file, the 68 bytes every scanner
// reports as a virus by agreement (eicar.org). It is split in the source so
// that a scanner on a developer's machine does not flag this file.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// EICARSignature is the only signature the test clamd loads: an .ndb
// body signature (target 0 = any file, offset * = anywhere) matching
// EICAR, so detection needs no downloaded database. ClamAV reports it as
// "<name>.UNOFFICIAL".
var EICARSignature = "Mxpolicyd-Test-EICAR:0:*:" + hex.EncodeToString([]byte(EICAR)) + "\n"

// ClamAVOptions configures StartClamAV.
type ClamAVOptions struct {
	// ContribDir holds clamd.conf and clamav-milter.conf, the files an
	// admin installs (contrib/clamav). The test prepends its own
	// directives (ports, paths), which ClamAV lets win because it keeps
	// the first occurrence of a directive.
	ContribDir string
}

// ClamAV is a running clamd and clamav-milter pair on loopback.
type ClamAV struct {
	// Milter is the smtpd_milters value, "inet:127.0.0.1:PORT".
	Milter string
	// ClamdAddr is clamd's TCP address.
	ClamdAddr string
	Dir       string

	tb     testing.TB
	clamd  *proc
	milter *proc
}

// StartClamAV starts clamd with a database that holds only EICARSignature,
// then clamav-milter talking to it, both as the test's own processes; both
// are stopped when the test ends. It fails the test if either cannot run.
func StartClamAV(t testing.TB, opt ClamAVOptions) *ClamAV {
	t.Helper()
	Require(t, "clamd", "clamav-milter")
	dir := TempDir(t, "clamav")
	c := &ClamAV{Dir: dir, tb: t,
		ClamdAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		Milter:    "inet:127.0.0.1:" + strconv.Itoa(FreePort(t))}
	t.Cleanup(func() { c.stop(); os.RemoveAll(dir) })
	uid, gid := userIDs(t, "clamav")
	for _, d := range []string{"db", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
		chown(t, filepath.Join(dir, d), uid, gid)
	}
	c.write("db/mxpolicyd-test.ndb", EICARSignature)
	c.write("clamd.conf", c.clamdOverrides()+c.contrib(opt, "clamd.conf"))
	c.write("clamav-milter.conf", c.milterOverrides()+c.contrib(opt, "clamav-milter.conf"))
	c.StartClamd()
	c.StartMilter()
	return c
}

func (c *ClamAV) clamdOverrides() string {
	_, port, _ := net.SplitHostPort(c.ClamdAddr)
	return fmt.Sprintf(`# Test overrides, first so they win over contrib's.
TCPSocket %s
TCPAddr 127.0.0.1
DatabaseDirectory %s
TemporaryDirectory %s
Foreground yes
`, port, c.path("db"), c.path("tmp"))
}

func (c *ClamAV) milterOverrides() string {
	port := strings.TrimPrefix(c.Milter, "inet:127.0.0.1:")
	return fmt.Sprintf(`# Test overrides, first so they win over contrib's.
MilterSocket inet:%s@127.0.0.1
ClamdSocket tcp:%s
TemporaryDirectory %s
LogFile %s
Foreground yes
`, port, c.ClamdAddr, c.path("tmp"), c.path("tmp/milter.log"))
}

func (c *ClamAV) contrib(opt ClamAVOptions, name string) string {
	b, err := os.ReadFile(filepath.Join(opt.ContribDir, name))
	if err != nil {
		c.tb.Fatalf("postfixtest: contrib ClamAV config: %v", err)
	}
	return "\n# " + name + " from contrib:\n" + string(b)
}

// StartClamd starts clamd and waits until it answers PING.
func (c *ClamAV) StartClamd() {
	c.tb.Helper()
	c.clamd = startProc(c.tb, c.path("clamd.out"), "clamd", "--config-file="+c.path("clamd.conf"))
	waitFor(c.tb, c.clamd, "clamd", 60*time.Second, c.pingClamd)
}

// StartMilter starts clamav-milter and waits until it accepts connections.
func (c *ClamAV) StartMilter() {
	c.tb.Helper()
	c.milter = startProc(c.tb, c.path("milter.out"), "clamav-milter", "--config-file="+c.path("clamav-milter.conf"))
	addr := strings.TrimPrefix(c.Milter, "inet:")
	waitFor(c.tb, c.milter, "clamav-milter", 30*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// StopClamd stops the scanner, leaving the milter running: the milter
// then answers for a scanner that is down.
func (c *ClamAV) StopClamd() { c.clamd.stop(c.tb); c.clamd = nil }

// StopMilter stops clamav-milter.
func (c *ClamAV) StopMilter() { c.milter.stop(c.tb); c.milter = nil }

func (c *ClamAV) stop() {
	if c.tb.Failed() {
		c.tb.Logf("postfixtest: clamd output:\n%s\nclamav-milter output:\n%s%s",
			c.read("clamd.out"), c.read("milter.out"), c.read("tmp/milter.log"))
	}
	if c.milter != nil {
		c.StopMilter()
	}
	if c.clamd != nil {
		c.StopClamd()
	}
}

// pingClamd speaks clamd's protocol: "zPING\0" is answered "PONG\0".
func (c *ClamAV) pingClamd() error {
	return talk(c.ClamdAddr, func(conn net.Conn) error {
		if _, err := conn.Write([]byte("zPING\x00")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := conn.Read(buf); err != nil {
			return err
		}
		if string(buf) != "PONG\x00" {
			return fmt.Errorf("clamd answered %q to PING", buf)
		}
		return nil
	})
}

func (c *ClamAV) path(rel string) string { return filepath.Join(c.Dir, rel) }

func (c *ClamAV) write(rel, data string) {
	if err := os.WriteFile(c.path(rel), []byte(data), 0o644); err != nil {
		c.tb.Fatalf("postfixtest: %v", err)
	}
}

func (c *ClamAV) read(rel string) string {
	b, _ := os.ReadFile(c.path(rel))
	return string(b)
}

// proc is a foreground daemon the test started, in its own process group.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *os.File
	exited chan struct{}
}

func startProc(t testing.TB, outPath, name string, args ...string) *proc {
	t.Helper()
	path, err := lookPath(name)
	if err != nil {
		t.Fatalf("postfixtest: %s: %v", name, err)
	}
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	p := &proc{name: name, cmd: exec.Command(path, args...), out: out, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("postfixtest: start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p
}

// stop sends SIGTERM to the process group, then SIGKILL after 15 s.
func (p *proc) stop(t testing.TB) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Errorf("postfixtest: %s did not stop in 15s; killing it", p.name)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	p.out.Close()
}

// waitFor polls ready until it succeeds, the process exits, or limit
// passes.
func waitFor(t testing.TB, p *proc, what string, limit time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.out.Name())
			t.Fatalf("postfixtest: %s exited at start-up (%v):\n%s", what, p.cmd.ProcessState, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.out.Name())
			t.Fatalf("postfixtest: %s not ready after %v: %v\n%s", what, limit, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
