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

var goDirective = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)

// TestDockerfile checks the Dockerfile's structure. No Docker engine runs
// in CI, so the image itself is not built here.
func TestDockerfile(t *testing.T) {
	st := stages(parseDockerfile(readFile(t, "compose/Dockerfile")))
	if len(st) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(st))
	}
	build, final := st[0], st[len(st)-1]
	goVer := goDirective.FindStringSubmatch(readFile(t, "../go.mod"))
	if goVer == nil || !strings.HasPrefix(build.from, "golang:"+goVer[1]) {
		t.Errorf("build stage FROM %s: want golang:%s (go.mod)", build.from, goVer)
	}
	if !hasInstr(build.body, "RUN", "CGO_ENABLED=0") {
		t.Error("build stage: CGO_ENABLED=0 missing; the run stage has no libc")
	}
	if !strings.Contains(final.from, "distroless/static") && !strings.Contains(final.from, "-slim") {
		t.Errorf("run stage FROM %s: want distroless/static or a -slim image", final.from)
	}
	for _, s := range st {
		for _, in := range s.body {
			if in.cmd == "ADD" && remote.MatchString(in.args) {
				t.Errorf("ADD %s: a remote download is unpinned and unverified", in.args)
			}
		}
	}
	checkFinalStage(t, final, st)
}

var remote = regexp.MustCompile(`(?i)(https?|ftp)://|git@`)

func checkFinalStage(t *testing.T, final stage, all []stage) {
	t.Helper()
	user := ""
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args
		case "COPY":
			if from, ok := strings.CutPrefix(in.args, "--from="); ok {
				name, _, _ := strings.Cut(from, " ")
				if !slices.ContainsFunc(all, func(s stage) bool { return s.name == name }) {
					t.Errorf("COPY --from=%s: no such stage", name)
				}
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("run stage USER %q: want a non-root user", user)
	}
	if !hasInstr(final.body, "COPY", "/usr/local/bin/mxpolicyd") ||
		!hasInstr(final.body, "ENTRYPOINT", `"/usr/local/bin/mxpolicyd"`) {
		t.Error("run stage: the binary is not copied to or run from /usr/local/bin/mxpolicyd")
	}
	var argv []string
	for _, in := range final.body {
		if in.cmd == "CMD" {
			argv = jsonArgs(in.args)
		}
	}
	checkCommand(t, "Dockerfile CMD", append([]string{"mxpolicyd"}, argv...))
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

func TestDockerignore(t *testing.T) {
	lines := strings.Fields(readFile(t, "compose/Dockerfile.dockerignore"))
	if !slices.Contains(lines, ".git") {
		t.Error("Dockerfile.dockerignore: .git should stay out of the build context")
	}
}
