package e2e

// `mxpolicyd greylist release` and `forget` against running daemons
// (README, "Greylist administration"). Two daemons share one PostgreSQL
// database, as two MX hosts do. The commands change the database and bump
// greylist_version in the same transaction; each daemon polls that counter
// every second and empties its in-memory pass cache when it moves
// (greylist/cache.go, Changes), so both must follow a change within a
// second or two. greylist.delay is 1h: nothing here passes by waiting.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// glAdminConfig greylists with a delay no test waits out; SPF is off and
// no DNS list is configured, so greylisting decides every request.
const glAdminConfig = baseConfig + `
greylist:
  delay: 1h
`

// glAdminReach is how long a daemon may take to follow a release or
// forget: the README promises a second or two (a 1 s poll); the rest is
// slack for -race on a shared machine.
const glAdminReach = 5 * time.Second

// glRig is two daemons, "A" and "B", on one database.
type glRig struct {
	dsn string
	ds  map[string]*daemontest.Daemon
	n   int // requests sent, for unique instance values
}

func TestGreylistAdmin(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	dsn := pgtest.New(t)
	opt := daemontest.Options{Config: glAdminConfig, Database: dsn}
	r := &glRig{dsn: dsn, ds: map[string]*daemontest.Daemon{"A": startDaemon(t, opt), "B": startDaemon(t, opt)}}
	for _, d := range r.ds {
		d.WaitLog(t, "database ready") // until then greylisting fails open
	}
	// Each case has a client network and sender domain of its own, so no
	// pair auto-whitelisted by an earlier case answers for it.
	t.Run("release", r.testRelease)
	t.Run("forget", r.testForget)
	t.Run("bad selector", r.testBadSelector)
}

// testRelease: a triplet deferred on A passes on B, then on A, once it
// is released.
func (r *glRig) testRelease(t *testing.T) {
	tr := triplet{Client: "192.0.2.70", Sender: "alice@sender.test", Rcpt: "bob@example.test"}
	r.wantDeferred(t, "A", tr, "new triplet")
	r.wantDeferred(t, "B", tr, "early retry") // B sees A's row
	started := time.Now()
	out := r.admin(t, "release", selector(tr)...)
	if out != "released 1 pending triplets\n" {
		t.Errorf("release printed %q, want %q", out, "released 1 pending triplets\n")
	}
	released := time.Now()
	for _, name := range []string{"B", "A"} {
		reason := r.waitFor(t, name, tr, released, "pass", greylistPass)
		t.Logf("daemon %s let the released triplet pass (%s) %s", name, reason, since(started, released))
	}
}

// testForget: two triplets pass on both daemons, the second time from
// each daemon's pass cache; once forgotten, each daemon greylists one of
// them as new. A cached pass would be answered for greylist.cache_refresh
// (1h by default), so the deferral shows the cache was emptied.
func (r *glRig) testForget(t *testing.T) {
	trs := map[string]triplet{
		"A": {Client: "198.51.100.80", Sender: "carol@partner.test", Rcpt: "dave@example.test"},
		"B": {Client: "198.51.100.80", Sender: "carol@partner.test", Rcpt: "erin@example.test"},
	}
	for _, tr := range trs {
		r.wantDeferred(t, "A", tr, "new triplet")
	}
	sel := []string{"--client", "198.51.100.80", "--sender", "carol@partner.test"}
	if out := r.admin(t, "release", sel...); out != "released 2 pending triplets\n" {
		t.Fatalf("release printed %q, want %q", out, "released 2 pending triplets\n")
	}
	released := time.Now()
	for _, name := range []string{"A", "B"} {
		for _, tr := range trs {
			r.waitFor(t, name, tr, released, "pass", greylistPass)
		}
	}
	// The release bumped the counter too. Once both daemons have polled
	// since (every second), the passes they cache stay until the next
	// change, so only the forget can empty the caches filled now.
	time.Sleep(time.Until(released.Add(2500 * time.Millisecond)))
	filled := time.Now()
	for _, name := range []string{"A", "B"} {
		for _, tr := range trs {
			r.waitFor(t, name, tr, filled, "pass from the cache", func(action, reason string) bool {
				return !deferral(action) && strings.HasSuffix(reason, "(cached)")
			})
		}
	}
	started := time.Now()
	out := r.admin(t, "forget", sel...)
	if !strings.HasPrefix(out, "forgot 2 triplets, 1 client/domain pairs,") {
		t.Errorf("forget printed %q, want it to count 2 triplets and 1 client/domain pair", out)
	}
	forgotten := time.Now()
	for name, tr := range trs {
		reason := r.waitFor(t, name, tr, forgotten, "deferral", func(action, reason string) bool {
			if !deferral(action) && !strings.HasSuffix(reason, "(cached)") {
				t.Fatalf("daemon %s: %s passed from the database after forget (%s)", name, tr.Rcpt, reason)
			}
			return deferral(action)
		})
		if reason != "new triplet" {
			t.Errorf("daemon %s: forgotten %s deferred as %q, want %q", name, tr.Rcpt, reason, "new triplet")
		}
		t.Logf("daemon %s emptied its pass cache and greylisted %s again %s", name, tr.Rcpt, since(started, forgotten))
	}
}

// testBadSelector: each refused command line exits 2 with a message
// saying what is wrong, and leaves every stored triplet as it was.
func (r *glRig) testBadSelector(t *testing.T) {
	tr := triplet{Client: "203.0.113.90", Sender: "frank@other.test", Rcpt: "grace@example.test"}
	r.wantDeferred(t, "A", tr, "new triplet")
	before := r.list(t)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"release"}, "--all selects every triplet"},
		{[]string{"forget"}, "--all selects every triplet"},
		{[]string{"release", "--client", "203.0.113.300", "--sender", tr.Sender}, "is not an address, a network or a client key"},
		{[]string{"forget", "--client", "203.0.113.0/16"}, "clients are keyed by /24 networks"},
		{[]string{"release", "--all", "--client", tr.Client}, "give it alone"},
		{[]string{"forget", "--all", "--recipient", tr.Rcpt}, "give it alone"},
		{[]string{"forget", "--recipient", tr.Rcpt + "\x01"}, "control characters"},
	} {
		out, err := r.command(c.args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("greylist %q: %v, want exit status 2\n%s", c.args, err, out)
		}
		if !strings.Contains(string(out), c.msg) {
			t.Errorf("greylist %q said %q, want it to contain %q", c.args, out, c.msg)
		}
	}
	if after := r.list(t); !reflect.DeepEqual(after, before) {
		t.Errorf("refused commands changed the triplets:\nbefore %+v\nafter  %+v", before, after)
	}
	// Still pending on both daemons: neither released nor forgotten.
	r.wantDeferred(t, "A", tr, "early retry")
	r.wantDeferred(t, "B", tr, "early retry")
}

// greylistPass accepts a pass that greylisting decided; a store error
// also answers DUNNO (on_error fails open), but with no reason.
func greylistPass(action, reason string) bool { return !deferral(action) && reason != "" }

// since says how long ago a command started and returned.
func since(started, returned time.Time) string {
	return fmt.Sprintf("%v after the command started, %v after it returned",
		time.Since(started).Round(time.Millisecond), time.Since(returned).Round(time.Millisecond))
}

// selector names exactly tr's triplet.
func selector(tr triplet) []string {
	return []string{"--client", tr.Client, "--sender", tr.Sender, "--recipient", tr.Rcpt}
}

// command is "mxpolicyd greylist args --database DSN".
func (r *glRig) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append(append([]string{"greylist"}, args...), "--database", r.dsn)...)
	// A -race binary sleeps 1 s at exit by default (GORACE atexit_sleep_ms),
	// long after its change committed; without the sleep, "after it
	// returned" measures how long the daemons took.
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// admin runs "mxpolicyd greylist verb args" on the rig's database and
// returns its standard output.
func (r *glRig) admin(t *testing.T, verb string, args ...string) string {
	t.Helper()
	out, err := r.command(append([]string{verb}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("mxpolicyd greylist %s %q: %v\n%s", verb, args, err, stderr)
	}
	return string(out)
}

// list returns every stored triplet, in a fixed order.
func (r *glRig) list(t *testing.T) []greylist.Row {
	t.Helper()
	var rows []greylist.Row
	if err := json.Unmarshal([]byte(r.admin(t, "list", "--format", "json", "--limit", "0")), &rows); err != nil {
		t.Fatalf("greylist list --format json: %v", err)
	}
	slices.SortFunc(rows, func(a, b greylist.Row) int {
		return cmp.Or(cmp.Compare(a.ClientKey, b.ClientKey), cmp.Compare(a.Sender, b.Sender),
			cmp.Compare(a.Recipient, b.Recipient))
	})
	return rows
}

// ask sends tr to daemon name as a message of its own and returns the
// action and the reason its decision record gives.
func (r *glRig) ask(t *testing.T, name string, tr triplet) (string, string) {
	t.Helper()
	r.n++
	instance := fmt.Sprintf("gladmin.%d", r.n)
	d := r.ds[name]
	action, _ := askOnce(t, d.Addr, faultRequest(tr.Client, tr.Sender, tr.Rcpt, instance))
	// The record is written as the reply goes out; give it a moment.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, rec := range d.Decisions() {
			if rec["instance"] == instance {
				reason, _ := rec["reason"].(string)
				return action, reason
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon %s logged no decision for instance %s", name, instance)
		}
	}
}

// wantDeferred asks tr on daemon name and wants a greylisting deferral
// for reason.
func (r *glRig) wantDeferred(t *testing.T, name string, tr triplet, reason string) {
	t.Helper()
	if action, got := r.ask(t, name, tr); !deferral(action) || got != reason {
		t.Fatalf("daemon %s, %s from %s: action %q, reason %q; want a deferral, %q",
			name, tr.Rcpt, tr.Client, action, got, reason)
	}
}

// waitFor asks tr on daemon name every 100 ms until done accepts the
// answer, failing once glAdminReach has passed since from; it returns
// the accepted answer's reason.
func (r *glRig) waitFor(t *testing.T, name string, tr triplet, from time.Time, what string,
	done func(action, reason string) bool) string {
	t.Helper()
	for {
		action, reason := r.ask(t, name, tr)
		if done(action, reason) {
			return reason
		}
		if time.Since(from) > glAdminReach {
			t.Fatalf("daemon %s, %s: no %s %v after the command; last action %q, reason %q",
				name, tr.Rcpt, what, glAdminReach, action, reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
