package postfixtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mail is one SMTP transaction for swaks to attempt.
type Mail struct {
	From string
	To   []string
	// ClientAddr is the address Postfix (and so the policy service) sees,
	// presented with XCLIENT; empty leaves 127.0.0.1.
	ClientAddr string
	// ClientPort is the XCLIENT PORT; "[UNAVAILABLE]" makes Postfix send
	// client_port=unknown (XCLIENT_README). Empty leaves swaks' own port.
	ClientPort string
	// ClientName is the XCLIENT NAME (the verified reverse name); empty
	// leaves Postfix's "unknown".
	ClientName string
	// Login is the XCLIENT LOGIN: Postfix treats the session as
	// SASL-authenticated as that user and sends sasl_username to the
	// policy service (XCLIENT_README). It needs smtpd_sasl_auth_enable =
	// yes (Options.ExtraMainCF); empty leaves the client unauthenticated.
	Login string
	Helo  string
	// Body replaces swaks' default body.
	Body string
	// Attach, if set, is sent as an application/octet-stream attachment.
	Attach string
	// QuitAfter stops the dialogue after the named step, e.g. "RCPT";
	// empty sends the message.
	QuitAfter string
}

// Reply is one SMTP reply; Text is the reply without its code, its lines
// joined with "\n".
type Reply struct {
	Code int
	Text string
}

func (r Reply) String() string {
	if r.Code == 0 {
		return "(no reply)"
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

// Step is a command swaks sent and the reply to it. The greeting has an
// empty Command; the end of DATA has Command ".".
type Step struct {
	Command string
	Reply   Reply
}

// Result is what one swaks run saw.
type Result struct {
	Steps      []Step
	ExitCode   int
	Transcript string
}

// Swaks sends m to the instance and returns the dialogue. A swaks failure
// that a reply explains (a rejected RCPT, a rejected message) is a normal
// Result; no dialogue at all fails the test.
func (p *Postfix) Swaks(t testing.TB, m Mail) *Result {
	t.Helper()
	args, cleanup := swaksArgs(t, p.Addr, m)
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.swaks, args...).CombinedOutput()
	res := ParseSwaks(string(out))
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("postfixtest: swaks: %v\n%s", err, out)
	}
	if len(res.Steps) == 0 {
		t.Fatalf("postfixtest: swaks got no SMTP reply (exit %d):\n%s\n%s", res.ExitCode, out, p.Log())
	}
	return res
}

func swaksArgs(t testing.TB, addr string, m Mail) (args []string, cleanup func()) {
	t.Helper()
	args = []string{"--server", addr, "--from", m.From, "--to", strings.Join(m.To, ","),
		"--timeout", "60s"}
	args = appendIf(args, "--helo", m.Helo)
	args = appendIf(args, "--xclient-addr", m.ClientAddr)
	args = appendIf(args, "--xclient-port", m.ClientPort)
	args = appendIf(args, "--xclient-name", m.ClientName)
	args = appendIf(args, "--xclient-login", m.Login)
	args = appendIf(args, "--quit-after", m.QuitAfter)
	if m.Body == "" && m.Attach == "" {
		return args, func() {}
	}
	// Contents go through files ("@path"): swaks would otherwise take an
	// argument that names an existing file, or starts with "@", as a file.
	dir, err := os.MkdirTemp("", "mxp-swaks-")
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	if m.Body != "" {
		args = append(args, "--body", "@"+writeTemp(t, dir, "body.txt", m.Body))
	}
	if m.Attach != "" {
		args = append(args, "--attach", "@"+writeTemp(t, dir, "attachment.bin", m.Attach))
	}
	return args, cleanup
}

func appendIf(args []string, flag, v string) []string {
	if v == "" {
		return args
	}
	return append(args, flag, v)
}

func writeTemp(t testing.TB, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	return path
}

// ParseSwaks reads a swaks transcript: " -> " lines are what it sent,
// "<-  " and "<** " lines (success, failure) the server's replies. Swaks
// does not pipeline unless asked, so each reply answers the line sent
// just before it (for the message body, that is the final ".").
func ParseSwaks(transcript string) *Result {
	res := &Result{Transcript: transcript}
	var cmd string
	var cur *Reply // the multi-line reply in progress, if any
	for _, line := range strings.Split(transcript, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, " -> "):
			cmd, cur = line[len(" -> "):], nil
		case strings.HasPrefix(line, "<-  "), strings.HasPrefix(line, "<** "):
			cur = addReplyLine(res, cur, cmd, line[len("<-  "):])
		}
	}
	return res
}

// addReplyLine adds one reply line, "250-text" (more follows) or
// "250 text" (last line; RFC 5321 section 4.2.1), and returns the reply
// still in progress.
func addReplyLine(res *Result, cur *Reply, cmd, line string) *Reply {
	if len(line) < 3 {
		return nil
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return nil
	}
	text := ""
	if len(line) > 4 {
		text = line[4:]
	}
	if cur == nil {
		res.Steps = append(res.Steps, Step{Command: cmd, Reply: Reply{Code: code, Text: text}})
		cur = &res.Steps[len(res.Steps)-1].Reply
	} else {
		cur.Text += "\n" + text
	}
	if len(line) > 3 && line[3] == '-' {
		return cur
	}
	return nil
}

// Rcpt returns the reply to the i-th RCPT TO, or a zero Reply.
func (r *Result) Rcpt(i int) Reply {
	n := 0
	for _, s := range r.Steps {
		if strings.HasPrefix(strings.ToUpper(s.Command), "RCPT TO:") {
			if n == i {
				return s.Reply
			}
			n++
		}
	}
	return Reply{}
}

// RcptCode returns the code of the reply to the i-th RCPT TO (0: none).
func (r *Result) RcptCode(i int) int { return r.Rcpt(i).Code }

// Mail returns the reply to MAIL FROM.
func (r *Result) Mail() Reply { return r.reply("MAIL FROM:") }

// Data returns the reply to the DATA command itself.
func (r *Result) Data() Reply { return r.reply("DATA") }

// DataEnd returns the reply to the end of the message (after the body's
// final "."): where milters such as clamav-milter answer.
func (r *Result) DataEnd() Reply { return r.reply(".") }

func (r *Result) reply(cmd string) Reply {
	for _, s := range r.Steps {
		if s.Command == cmd || (strings.HasSuffix(cmd, ":") && strings.HasPrefix(strings.ToUpper(s.Command), cmd)) {
			return s.Reply
		}
	}
	return Reply{}
}

func (r *Result) String() string { return r.Transcript }
