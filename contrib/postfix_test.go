package contrib

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// postconf loads snippet as a whole main.cf in a private config directory
// and returns a function reading one parameter. Any warning (an unknown
// or misspelt parameter is one) fails the test.
func postconf(t *testing.T, snippet string) func(flag, name string) string {
	t.Helper()
	bin := need(t, "postconf", "postfix")
	dir := t.TempDir()
	copyFile(t, snippet, filepath.Join(dir, "main.cf"))
	// A minimal master.cf so postconf has nothing to warn about but main.cf.
	master := "smtp inet n - y - - smtpd\n"
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, bin, "-c", dir, "-n"); err != nil || stderr != "" {
		t.Fatalf("postconf -n %s: %v\n%s", snippet, err, stderr)
	}
	return func(flag, name string) string {
		out, stderr, err := run(t, bin, "-c", dir, flag, name)
		if err != nil || stderr != "" {
			t.Fatalf("postconf %s %s: %v\n%s", flag, name, err, stderr)
		}
		return strings.TrimSpace(out)
	}
}

// restrictions splits a restriction list on commas and whitespace, keeping
// { ... } groups whole.
func restrictions(s string) []string {
	var out []string
	depth, cur := 0, ""
	flush := func() {
		if cur = strings.TrimSpace(cur); cur != "" {
			out = append(out, cur)
		}
		cur = ""
	}
	for _, r := range s {
		switch {
		case r == '{':
			depth++
		case r == '}':
			depth--
		case depth == 0 && (r == ',' || r == ' ' || r == '\t' || r == '\n'):
			flush()
			continue
		}
		cur += string(r)
	}
	flush()
	return out
}

// checkPolicyService asserts the policy service comes after
// reject_unauth_destination with the recommended options, and returns its
// endpoint.
func checkPolicyService(t *testing.T, list string) string {
	t.Helper()
	r := restrictions(list)
	unauth := slices.Index(r, "reject_unauth_destination")
	for i, s := range r {
		if i == 0 || r[i-1] != "check_policy_service" {
			continue
		}
		if unauth < 0 || unauth > i {
			t.Errorf("check_policy_service must follow reject_unauth_destination: %q", list)
		}
		opts := strings.Fields(strings.NewReplacer("{", " ", "}", " ", ",", " ").Replace(s))
		for _, want := range []string{"timeout=10s", "default_action=DUNNO"} {
			if !slices.Contains(opts, want) {
				t.Errorf("check_policy_service %s lacks %s", s, want)
			}
		}
		return opts[0]
	}
	t.Fatalf("no check_policy_service in %q", list)
	return ""
}

// checkDataPolicyService asserts that the same policy service is asked at
// DATA (one verdict per message, and the headers a one-recipient reply
// cannot carry: README, "Postfix integration").
func checkDataPolicyService(t *testing.T, list, endpoint string) {
	t.Helper()
	want := []string{"check_policy_service", "{ " + endpoint + ", timeout=10s, default_action=DUNNO }"}
	if r := restrictions(list); !slices.Equal(r, want) {
		t.Errorf("smtpd_data_restrictions = %q, want %q", r, want)
	}
}

func TestPostfixSnippet(t *testing.T) {
	get := postconf(t, "postfix/main.cf.snippet")
	ep := checkPolicyService(t, get("-h", "smtpd_recipient_restrictions"))
	checkDataPolicyService(t, get("-h", "smtpd_data_restrictions"), ep)
	if want := "inet:" + exampleListen(t); ep != want {
		t.Errorf("policy service at %s, but the example config listens on %s", ep, want)
	}
	milter := get("-h", "smtpd_milters")
	if want := postfixMilter(t); milter != want {
		t.Errorf("smtpd_milters = %q, but clamav-milter.conf listens on %q", milter, want)
	}
	for name, want := range map[string]string{
		"non_smtpd_milters":     milter,
		"milter_default_action": "tempfail",
		"milter_protocol":       "6",
	} {
		if got := get("-xh", name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestPostfixUnixSnippet(t *testing.T) {
	get := postconf(t, "postfix/main.cf.unix.snippet")
	ep := checkPolicyService(t, get("-h", "smtpd_recipient_restrictions"))
	checkDataPolicyService(t, get("-h", "smtpd_data_restrictions"), ep)
	rel, ok := strings.CutPrefix(ep, "unix:")
	if !ok || strings.HasPrefix(rel, "/") {
		t.Fatalf("endpoint %s: want unix: relative to the queue directory (chroot)", ep)
	}
	// The socket directory the systemd drop-in creates must hold it.
	dropin := readFile(t, "systemd/mxpolicyd.service.d/postfix-socket.conf")
	dir := "/var/spool/postfix/" + filepath.Dir(rel)
	if !strings.Contains(dropin, " "+dir+"\n") {
		t.Errorf("postfix-socket.conf does not create %s", dir)
	}
	if !strings.Contains(readFile(t, "postfix/main.cf.unix.snippet"), `"unix:/var/spool/postfix/`+rel+`"`) {
		t.Errorf("main.cf.unix.snippet does not show the matching listen: line for %s", rel)
	}
}
