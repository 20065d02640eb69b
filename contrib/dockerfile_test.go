package contrib

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

type instr struct {
	cmd  string // upper case
	args string
}

// parseDockerfile splits a Dockerfile into instructions, joining
// backslash continuations and dropping comments and parser directives.
func parseDockerfile(text string) []instr {
	var out []instr
	cur := ""
	for _, line := range strings.Split(text, "\n") {
		trim := strings.TrimSpace(line)
		if trim == "" || strings.HasPrefix(trim, "#") {
			continue
		}
		if strings.HasSuffix(trim, "\\") {
			cur += strings.TrimSuffix(trim, "\\") + " "
			continue
		}
		cur += trim
		cmd, args, _ := strings.Cut(cur, " ")
		out = append(out, instr{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur = ""
	}
	return out
}

// stage is one FROM ... section.
type stage struct {
	from, name string
	body       []instr
}

func stages(ins []instr) []stage {
	var out []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			out = append(out, s)
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].body = append(out[len(out)-1].body, in)
		}
	}
	return out
}

// The context scripts/image.sh builds the image from: what it writes under
// $ctx is all a COPY can take.
var (
	scriptUID     = regexp.MustCompile(`(?m)^uid=(\d+)`)
	scriptContext = regexp.MustCompile(`"\$ctx/(\w+)"`)
)

// TestDockerfile checks the Dockerfile's structure against scripts/image.sh,
// which builds it, inspects the image and runs it (scripts/test.sh).
func TestDockerfile(t *testing.T) {
	st := stages(parseDockerfile(readFile(t, "compose/Dockerfile")))
	if len(st) != 1 || st[0].from != "scratch" {
		t.Fatalf("want one stage FROM scratch (the binary is static and built outside), got %+v", st)
	}
	body := st[0].body
	script := readFile(t, "../scripts/image.sh")
	ctx := map[string]bool{}
	for _, m := range scriptContext.FindAllStringSubmatch(script, -1) {
		ctx[m[1]] = true
	}
	for _, in := range body {
		switch in.cmd {
		case "ADD":
			t.Errorf("ADD %s: COPY from the context is all this image needs", in.args)
		case "COPY":
			f := strings.Fields(in.args)
			for _, src := range f[:len(f)-1] {
				if !strings.HasPrefix(src, "--") && !ctx[src] {
					t.Errorf("COPY %s: scripts/image.sh puts no %s in the context", in.args, src)
				}
			}
		}
	}
	checkUser(t, body, scriptUID.FindStringSubmatch(script))
	checkRun(t, body)
}

// checkUser: a numeric non-root user, the one image.sh writes to passwd.
func checkUser(t *testing.T, body []instr, uid []string) {
	t.Helper()
	user := ""
	for _, in := range body {
		if in.cmd == "USER" {
			user = in.args
		}
	}
	u, _, _ := strings.Cut(user, ":")
	if u == "" || u == "root" || u == "0" {
		t.Errorf("USER %q: want a non-root user", user)
	}
	if uid == nil || u != uid[1] {
		t.Errorf("USER %q: scripts/image.sh writes passwd for uid %v", user, uid)
	}
}

// checkRun: the entry point, command, health check and labels.
func checkRun(t *testing.T, body []instr) {
	t.Helper()
	if !hasInstr(body, "COPY", "/usr/local/bin/mxpolicyd") ||
		!hasInstr(body, "ENTRYPOINT", `["/usr/local/bin/mxpolicyd"]`) {
		t.Error("the binary is not copied to or run from /usr/local/bin/mxpolicyd")
	}
	for _, label := range []string{"title", "description", "source"} {
		if !hasInstr(body, "LABEL", "org.opencontainers.image."+label+"=") {
			t.Errorf("LABEL org.opencontainers.image.%s missing", label)
		}
	}
	var cmd, health []string
	for _, in := range body {
		switch in.cmd {
		case "CMD":
			cmd = jsonArgs(in.args)
		case "HEALTHCHECK":
			_, exec, _ := strings.Cut(in.args, "CMD ")
			health = jsonArgs(exec)
		}
	}
	checkCommand(t, "Dockerfile CMD", append([]string{"mxpolicyd"}, cmd...))
	if len(health) == 0 {
		t.Fatal("HEALTHCHECK CMD [...] missing")
	}
	checkCommand(t, "Dockerfile HEALTHCHECK", health)
}

func hasInstr(body []instr, cmd, substr string) bool {
	return slices.ContainsFunc(body, func(in instr) bool {
		return in.cmd == cmd && strings.Contains(in.args, substr)
	})
}

var jsonString = regexp.MustCompile(`"([^"]*)"`)

// jsonArgs reads the exec form ["a", "b"] of CMD and ENTRYPOINT.
func jsonArgs(s string) []string {
	var out []string
	for _, m := range jsonString.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}
