package contrib

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of the compose specification the checks read.
type composeFile struct {
	Services map[string]struct {
		Image       string `yaml:"image"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		NetworkMode string            `yaml:"network_mode"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Logging struct {
			Driver  string            `yaml:"driver"`
			Options map[string]string `yaml:"options"`
		} `yaml:"logging"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestCompose validates the compose file with docker-compose (which needs
// no engine for config), then checks it against the files it mounts, the
// image scripts/image.sh builds and the addresses the other contrib files
// use.
func TestCompose(t *testing.T) {
	const dir = "compose"
	dc := need(t, "docker-compose", "docker-compose")
	t.Setenv("POSTGRES_PASSWORD", "x") // required by the file, as .env would give it
	if _, stderr, err := run(t, dc, "-f", filepath.Join(dir, "docker-compose.yml"), "config", "-q"); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr)
	}
	var c composeFile
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, filepath.Join(dir, "docker-compose.yml"))))
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "mxpolicyd", "clamd", "clamav-milter"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	for name, s := range c.Services {
		checkComposeService(t, c, name, s.Volumes, s.Ports)
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
	}
	mx := c.Services["mxpolicyd"]
	if tag := imageTag.FindStringSubmatch(readFile(t, "../scripts/image.sh")); tag == nil || mx.Image != tag[1] {
		t.Errorf("mxpolicyd image %q is not the one scripts/image.sh builds (%v)", mx.Image, tag)
	}
	checkCommand(t, "compose mxpolicyd", append([]string{"mxpolicyd"}, mx.Command...))
	if h := mx.Healthcheck.Test; len(h) < 2 || h[0] != "CMD" {
		t.Errorf("mxpolicyd healthcheck %q: want the exec form [CMD, ...]", h)
	} else {
		checkCommand(t, "compose mxpolicyd healthcheck", h[1:])
	}
	// The services Postfix talks to share the host's loopback, where
	// main.cf.snippet expects them.
	for _, name := range []string{"mxpolicyd", "clamd", "clamav-milter"} {
		if got := c.Services[name].NetworkMode; got != "host" {
			t.Errorf("%s: network_mode %q, want host", name, got)
		}
	}
	// A line per decision: the daemon's log is rotated, not left to grow
	// (json-file keeps one unbounded file without max-size).
	if l := mx.Logging; l.Driver != "json-file" || l.Options["max-size"] == "" || l.Options["max-file"] == "" {
		t.Errorf("mxpolicyd logging %+v: want json-file with max-size and max-file", l)
	}
	checkComposeDSN(t, mx.Environment["MXPOLICYD_DATABASE"], c.Services["postgres"].Ports)
	checkComposeConfigFiles(t, mx.Command, mx.Volumes)
}

// checkComposeConfigFiles: the whitelist files the mounted config names
// are mounted too; serve refuses to start without them.
func checkComposeConfigFiles(t *testing.T, command, volumes []string) {
	t.Helper()
	targets := map[string]string{} // container path: host path
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			targets[parts[1]] = parts[0]
		}
	}
	i := slices.Index(command, "--config")
	if i < 0 || i+1 >= len(command) || targets[command[i+1]] == "" {
		t.Fatalf("mxpolicyd command %q: want --config naming a mounted file", command)
	}
	var cfg struct {
		Whitelist struct {
			Clients    []string `yaml:"clients_files"`
			Recipients []string `yaml:"recipients_files"`
			Senders    []string `yaml:"senders_files"`
		} `yaml:"whitelist"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join("compose", targets[command[i+1]]))), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, f := range slices.Concat(cfg.Whitelist.Clients, cfg.Whitelist.Recipients, cfg.Whitelist.Senders) {
		if targets[f] == "" {
			t.Errorf("the config names %s, which the mxpolicyd service does not mount", f)
		}
	}
}

// checkComposeService: bind mounts name files that exist, named volumes
// are declared, and published ports are bound to loopback only.
func checkComposeService(t *testing.T, c composeFile, name string, volumes, ports []string) {
	t.Helper()
	for _, v := range volumes {
		src, _, _ := strings.Cut(v, ":")
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
				t.Errorf("%s: volume %s: %v", name, v, err)
			}
		} else if _, ok := c.Volumes[src]; !ok {
			t.Errorf("%s: named volume %s not declared", name, src)
		}
	}
	for _, p := range ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("%s: port %q is published beyond loopback", name, p)
		}
	}
}

var imageTag = regexp.MustCompile(`(?m)^tag=(\S+)`)

var composeVar = regexp.MustCompile(`\$\{[^}]*\}`)

// checkComposeDSN: mxpolicyd's database URL reaches the published port.
func checkComposeDSN(t *testing.T, dsn string, ports []string) {
	t.Helper()
	u, err := url.Parse(composeVar.ReplaceAllString(dsn, "x"))
	if err != nil || u.Scheme != "postgres" {
		t.Fatalf("MXPOLICYD_DATABASE %q: want a postgres:// URL (%v)", dsn, err)
	}
	published := make([]string, len(ports))
	for i, p := range ports {
		published[i] = strings.Join(strings.Split(p, ":")[:2], ":")
	}
	if !slices.Contains(published, u.Host) {
		t.Errorf("MXPOLICYD_DATABASE host %s is not a published postgres port %v", u.Host, ports)
	}
}
