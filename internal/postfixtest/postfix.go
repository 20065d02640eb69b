// Package postfixtest runs a throwaway, real Postfix instance for end-to-end
// tests, and drives it with swaks.
//
// The instance lives entirely in its own directory (config, queue, data,
// mailbox and log), listens on a free loopback port, never reads or writes
// /etc/postfix or the system queue, and runs under its own syslog_name, so it
// can run beside a system Postfix and beside other test instances. It needs
// root (Postfix's master runs as root and its daemons switch to the postfix
// user) and the Debian postfix and swaks packages; scripts/install-test-deps.sh
// installs them.
package postfixtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Domain is the recipient domain the instance accepts and delivers to its
// maildir; any local part is accepted.
const Domain = "example.test"

// nobody owns the mailbox: Postfix's virtual(8) refuses uids below
// virtual_minimum_uid (100), and 65534 exists on every Debian system.
const nobody = 65534

// Options configures an instance.
type Options struct {
	// PolicyAddr is the policy service Postfix consults after
	// reject_unauth_destination: "host:port" for TCP, or an absolute
	// socket path (optionally prefixed "unix:"). Empty: no policy service.
	PolicyAddr string
	// Milters is the smtpd_milters value, e.g. "inet:127.0.0.1:7357".
	// When set, milter_default_action is tempfail, so a dead milter defers
	// mail rather than passing or losing it.
	Milters string
	// ExtraMainCF overrides or adds main.cf parameters.
	ExtraMainCF map[string]string
}

// Postfix is a running instance. Its fields are read-only.
type Postfix struct {
	// Addr is the smtpd listener, "127.0.0.1:PORT".
	Addr string
	// Dir holds everything the instance owns.
	Dir string

	tb      testing.TB
	bin     string // the postfix command
	swaks   string
	cmd     *exec.Cmd
	exited  chan struct{}
	out     *os.File
	stopped bool
}

// Start starts an instance and registers Stop with t.Cleanup. It fails the
// test (never skips it) when Postfix cannot run, unless the e2e tests were
// explicitly opted out of with MXPOLICYD_E2E=0 (see Require).
func Start(t testing.TB, opt Options) *Postfix {
	t.Helper()
	Require(t, "postfix", "postconf", "swaks")
	dir := TempDir(t, "pf")
	p := &Postfix{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))), Dir: dir, tb: t,
		bin: mustLookPath(t, "postfix"), swaks: mustLookPath(t, "swaks")}
	t.Cleanup(p.Stop)
	p.layout()
	p.writeConfig(opt)
	if out, err := p.postfix("check"); err != nil {
		t.Fatalf("postfixtest: postfix check failed: %v\n%s\n%s", err, out, p.Log())
	}
	p.startMaster()
	p.waitReady(20 * time.Second)
	return p
}

// layout creates the instance's directories. Postfix insists that the
// config and queue directories are root-owned and that data_directory
// belongs to mail_owner; "postfix check" then creates the queue's
// subdirectories with the right owners and modes.
func (p *Postfix) layout() {
	for _, d := range []string{"etc", "spool", "data", "mail"} {
		if err := os.Mkdir(filepath.Join(p.Dir, d), 0o755); err != nil {
			p.tb.Fatalf("postfixtest: %v", err)
		}
	}
	uid, gid := postfixIDs(p.tb)
	chown(p.tb, filepath.Join(p.Dir, "data"), uid, gid)
	chown(p.tb, filepath.Join(p.Dir, "mail"), nobody, nobody)
}

func (p *Postfix) writeConfig(opt Options) {
	main := p.mainCF(opt)
	for k, v := range opt.ExtraMainCF {
		main[k] = v
	}
	var b strings.Builder
	keys := make([]string, 0, len(main))
	for k := range main {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.ContainsAny(k+main[k], "\r\n") {
			p.tb.Fatalf("postfixtest: main.cf %s: newline in name or value", k)
		}
		fmt.Fprintf(&b, "%s = %s\n", k, main[k])
	}
	p.writeFile("etc/main.cf", b.String())
	p.writeFile("etc/master.cf", fmt.Sprintf(masterCF, p.Addr))
}

// mainCF returns the instance's main.cf parameters.
func (p *Postfix) mainCF(opt Options) map[string]string {
	m := map[string]string{
		"compatibility_level": "3.6",
		"queue_directory":     p.path("spool"),
		"data_directory":      p.path("data"),
		"mail_owner":          "postfix",
		"setgid_group":        "postdrop",
		// A distinct log tag, and logs in a file of our own (postlogd)
		// rather than syslog, so tests can print them on failure.
		"syslog_name":           "postfix-mxpolicyd-test",
		"maillog_file":          p.path("maillog"),
		"maillog_file_prefixes": p.Dir,
		"import_environment":    "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C",
		"myhostname":            "mx." + Domain,
		"mydomain":              Domain,
		"myorigin":              Domain,
		"mydestination":         "",
		"alias_maps":            "",
		"alias_database":        "",
		"relayhost":             "",
		"biff":                  "no",
		"inet_interfaces":       "127.0.0.1",
		"inet_protocols":        "ipv4",
		"smtpd_peername_lookup": "no",
		// swaks --xclient-addr presents any client address to Postfix
		// (XCLIENT_README), which is what the policy service sees.
		"smtpd_authorized_xclient_hosts": "127.0.0.0/8",
		// Mail for Domain is delivered by virtual(8) into one maildir,
		// so a test can see that an accepted message really arrived.
		"virtual_mailbox_domains": Domain,
		"virtual_mailbox_base":    p.path("mail"),
		"virtual_mailbox_maps":    "static:maildir/",
		"virtual_uid_maps":        "static:" + strconv.Itoa(nobody),
		"virtual_gid_maps":        "static:" + strconv.Itoa(nobody),
		// A test client is patient, but a test is not.
		"smtpd_error_sleep_time": "0s",
	}
	rr := "reject_unauth_destination"
	if opt.PolicyAddr != "" {
		// The line the README tells admins to use (SMTPD_POLICY_README):
		// after reject_unauth_destination, fail open.
		rr += ", check_policy_service { " + policyEndpoint(opt.PolicyAddr) + ", timeout=10s, default_action=DUNNO }"
	}
	m["smtpd_recipient_restrictions"] = rr
	if opt.Milters != "" {
		m["smtpd_milters"] = opt.Milters
		m["milter_default_action"] = "tempfail"
		m["milter_connect_timeout"] = "10s"
	}
	return m
}

func policyEndpoint(addr string) string {
	switch {
	case strings.HasPrefix(addr, "unix:"), strings.HasPrefix(addr, "inet:"):
		return addr
	case strings.HasPrefix(addr, "/"):
		return "unix:" + addr
	}
	return "inet:" + addr
}

// masterCF is Debian's master.cf.proto cut to the services a receiving
// instance uses, with chroot off (the instance's paths are not inside any
// chroot) and smtpd on our own loopback port.
const masterCF = `%s inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
virtual   unix  - n n -     - virtual
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
`

// startMaster runs "postfix start-fg": the master stays our child, so Stop
// can wait for it, and nothing is left behind if the test binary dies. It
// gets its own process group because the master signals its group on
// shutdown.
func (p *Postfix) startMaster() {
	out, err := os.Create(p.path("master.out"))
	if err != nil {
		p.tb.Fatalf("postfixtest: %v", err)
	}
	p.out = out
	p.cmd = exec.Command(p.bin, "-c", p.path("etc"), "start-fg")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatalf("postfixtest: postfix start-fg: %v", err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
}

// waitReady waits until smtpd answers with its banner.
func (p *Postfix) waitReady(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		err := p.greet()
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			p.tb.Fatalf("postfixtest: postfix exited during start-up:\n%s\n%s", p.masterOut(), p.Log())
		default:
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("postfixtest: smtpd at %s not ready after %v: %v\n%s", p.Addr, limit, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Postfix) greet() error {
	return talk(p.Addr, func(c net.Conn) error {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "220 ") || !strings.Contains(line, "mx."+Domain) {
			return fmt.Errorf("unexpected banner %q", line)
		}
		_, _ = c.Write([]byte("QUIT\r\n"))
		return nil
	})
}

// talk connects to a daemon being started and has fn check its answer:
// a second to connect, five for the exchange, so a poll of a daemon that
// is not up yet fails quickly.
func talk(addr string, fn func(net.Conn) error) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return fn(c)
}

// Stop stops the instance and removes its directory; on a failed test it
// first logs the Postfix log. It is safe to call more than once.
func (p *Postfix) Stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	if p.tb.Failed() {
		p.tb.Logf("postfixtest: Postfix log (%s):\n%s", p.Addr, p.Log())
	}
	if p.cmd != nil {
		p.stopMaster()
	}
	if p.out != nil {
		p.out.Close()
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		p.tb.Errorf("postfixtest: %v", err)
	}
}

// stopMaster asks the master to stop ("postfix stop" is a SIGTERM to it,
// which it passes to its children), and kills the master's process group if
// that takes too long.
func (p *Postfix) stopMaster() {
	if out, err := p.postfix("stop"); err != nil {
		p.tb.Logf("postfixtest: postfix stop: %v\n%s", err, out)
	}
	select {
	case <-p.exited:
		return
	case <-time.After(15 * time.Second):
	}
	p.tb.Errorf("postfixtest: master did not stop in 15s; killing it")
	if pid, err := p.masterPID(); err == nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

func (p *Postfix) masterPID() (int, error) {
	b, err := os.ReadFile(p.path("spool/pid/master.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// postfix runs a postfix(1) command against this instance.
func (p *Postfix) postfix(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append([]string{"-c", p.path("etc")}, args...)
	return exec.CommandContext(ctx, p.bin, args...).CombinedOutput()
}

// Log returns Postfix's log so far.
func (p *Postfix) Log() string {
	b, err := os.ReadFile(p.path("maillog"))
	if err != nil {
		return fmt.Sprintf("(no Postfix log: %v)", err)
	}
	return string(b)
}

func (p *Postfix) masterOut() string {
	b, _ := os.ReadFile(p.path("master.out"))
	return string(b)
}

// Delivered returns the messages delivered to the maildir so far.
func (p *Postfix) Delivered() []string {
	ents, err := os.ReadDir(p.path("mail/maildir/new"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		p.tb.Fatalf("postfixtest: %v", err)
	}
	var msgs []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(p.path("mail/maildir/new"), e.Name()))
		if err != nil {
			p.tb.Fatalf("postfixtest: %v", err)
		}
		msgs = append(msgs, string(b))
	}
	return msgs
}

// WaitDelivered waits until n messages have been delivered and returns
// them. Delivery happens after the SMTP dialogue, in the queue manager, so
// it is polled for.
func (p *Postfix) WaitDelivered(t testing.TB, n int, limit time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		msgs := p.Delivered()
		if len(msgs) >= n || time.Now().After(deadline) {
			if len(msgs) != n {
				t.Fatalf("postfixtest: %d messages delivered, want %d\n%s", len(msgs), n, p.Log())
			}
			return msgs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Queued is one message in the instance's queue, as postqueue -j lists it
// (postqueue(1)).
type Queued struct {
	Queue      string `json:"queue_name"` // "hold" for a message a HOLD action held
	ID         string `json:"queue_id"`
	Sender     string `json:"sender"`
	Recipients []struct {
		Address string `json:"address"`
	} `json:"recipients"`
}

// Queue lists the messages still queued (held, deferred, or not yet
// delivered), one JSON object a line from postqueue -j.
func (p *Postfix) Queue(t testing.TB) []Queued {
	t.Helper()
	pq := mustLookPath(t, "postqueue")
	out, err := exec.Command(pq, "-c", p.path("etc"), "-j").Output()
	if err != nil {
		t.Fatalf("postfixtest: postqueue -j: %v\n%s", err, p.Log())
	}
	var msgs []Queued
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var m Queued
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("postfixtest: postqueue -j: %v: %q", err, line)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func (p *Postfix) path(rel string) string { return filepath.Join(p.Dir, rel) }

func (p *Postfix) writeFile(rel, data string) {
	if err := os.WriteFile(p.path(rel), []byte(data), 0o644); err != nil {
		p.tb.Fatalf("postfixtest: %v", err)
	}
}
