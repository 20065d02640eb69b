package whitelist

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// rq builds a RCPT request; name is the verified client_name ("" means
// Postfix could not verify it and sent "unknown").
func rq(addr, name, sender, rcpt string) *policy.Request {
	r := &policy.Request{ProtocolState: "RCPT", ClientName: "unknown", ReverseName: name,
		Sender: sender, Recipient: rcpt}
	if addr != "" {
		r.ClientAddress = netip.MustParseAddr(addr)
	}
	if name != "" {
		r.ClientName = name
	}
	return r
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testWhitelist(t *testing.T) *Checker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ClientsFiles = []string{"testdata/whitelist_clients"}
	cfg.RecipientsFiles = []string{"testdata/whitelist_recipients"}
	cfg.SendersFiles = []string{writeFile(t, "senders", "# payroll\nnoreply@payroll.example.org\nnewsletter.example\nbounces@\n")}
	w, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestMatch(t *testing.T) {
	w := testWhitelist(t)
	const all, grey, role = "all", "greylist", "dnsbl,greylist"
	tests := []struct {
		name string
		req  *policy.Request
		want string // matched kind and value, "" for no match
		skip string
	}{
		{"v4 in /25", rq("192.0.2.5", "", "a@b.example", "u@x.example"), "client 192.0.2.0/25", all},
		{"v4 outside /25", rq("192.0.2.200", "", "a@b.example", "u@x.example"), "", ""},
		{"v4 exact", rq("198.51.100.17", "", "", "u@x.example"), "client 198.51.100.17", all},
		{"v4 exact neighbour", rq("198.51.100.18", "", "", "u@x.example"), "", ""},
		{"partial v4", rq("203.0.113.250", "", "", "u@x.example"), "client 203.0.113.0/24", all},
		{"partial v4 /16", rq("10.20.255.1", "", "", "u@x.example"), "client 10.20.0.0/16", all},
		{"v6 in /36", rq("2001:db8:4abc:1::7", "", "", "u@x.example"), "client 2001:db8:4000::/36", all},
		{"v6 outside /36", rq("2001:db8:5000::7", "", "", "u@x.example"), "", ""},
		{"v6 exact", rq("2001:db8:1::25", "", "", "u@x.example"), "client 2001:db8:1::25", all},
		{"v6 exact neighbour", rq("2001:db8:1::26", "", "", "u@x.example"), "", ""},
		{"mapped v4", rq("::ffff:192.0.2.9", "", "", "u@x.example"), "client 192.0.2.0/25", all},
		{"host domain itself", rq("198.18.0.1", "mailout.example.net", "", "u@x.example"), "client_name mailout.example.net", all},
		{"host subdomain", rq("198.18.0.1", "o12.MAILOUT.example.net.", "", "u@x.example"), "client_name mailout.example.net", all},
		{"host label boundary", rq("198.18.0.1", "evilmailout.example.net", "", "u@x.example"), "", ""},
		{"host regex", rq("198.18.0.1", "smtp17.bank.example", "", "u@x.example"), `client_name /^smtp[0-9]+\.bank\.example$/`, all},
		{"host regex anchored", rq("198.18.0.1", "smtp17.bank.example.evil", "", "u@x.example"), "", ""},
		{"sender address", rq("198.18.0.1", "", "NoReply@payroll.example.org", "u@x.example"), "sender noreply@payroll.example.org", grey},
		{"sender +ext", rq("198.18.0.1", "", "noreply+123@payroll.example.org", "u@x.example"), "sender noreply@payroll.example.org", grey},
		{"sender domain", rq("198.18.0.1", "", "a@lists.newsletter.example", "u@x.example"), "sender newsletter.example", grey},
		{"sender local any domain", rq("198.18.0.1", "", "bounces@whatever.example", "u@x.example"), "sender bounces@", grey},
		{"null sender", rq("198.18.0.1", "", "", "u@x.example"), "", ""},
		{"rcpt address +ext", rq("198.18.0.1", "", "a@b.example", "Support+Urgent@example.com"), "recipient support@example.com", grey},
		{"rcpt other user", rq("198.18.0.1", "", "a@b.example", "sales@example.com"), "", ""},
		{"rcpt domain", rq("198.18.0.1", "", "a@b.example", "x@hr.subsidiary.example"), "recipient subsidiary.example", grey},
		{"rcpt regex", rq("198.18.0.1", "", "a@b.example", "alerts-42@example.org"), `recipient /^alerts-[0-9]+@example\.org$/`, grey},
		{"role postmaster", rq("198.18.0.1", "", "a@b.example", "PostMaster@x.example"), "recipient postmaster@", role},
		{"role bare postmaster", rq("198.18.0.1", "", "a@b.example", "postmaster"), "recipient postmaster@", role},
		{"role abuse", rq("198.18.0.1", "", "a@b.example", "abuse@x.example"), "recipient abuse@", role},
		{"sender and rcpt", rq("198.18.0.1", "", "bounces@z.example", "abuse@x.example"), "sender bounces@; recipient abuse@", role},
		{"client wins", rq("192.0.2.1", "", "bounces@z.example", "abuse@x.example"), "client 192.0.2.0/25", all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := w.Match(tt.req, t0)
			var got []string
			for _, e := range m.Entries {
				got = append(got, string(e.Kind)+" "+e.Value)
			}
			if strings.Join(got, "; ") != tt.want {
				t.Errorf("matched %q, want %q", strings.Join(got, "; "), tt.want)
			}
			if skip := skipString(m.Skip); skip != tt.skip {
				t.Errorf("skip = %q, want %q", skip, tt.skip)
			}
		})
	}
}

func skipString(s policy.CheckSet) string {
	var names []string
	for _, n := range []string{"all", "dnsbl", "greylist", "spf"} {
		if s[n] {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// A PTR record is whatever its owner wants: a name Postfix could not
// forward-confirm (client_name=unknown, reverse_client_name set) never
// matches a host name entry (SMTPD_POLICY_README, "Protocol description").
func TestForgedPTRDoesNotMatch(t *testing.T) {
	w := testWhitelist(t)
	req := rq("198.18.0.1", "", "a@b.example", "u@x.example")
	req.ReverseName = "smtp1.bank.example"
	if m := w.Match(req, t0); len(m.Entries) != 0 {
		t.Fatalf("forged PTR matched %s", m)
	}
	req.ClientName = "smtp1.bank.example"
	if m := w.Match(req, t0); len(m.Entries) != 1 {
		t.Fatal("verified name did not match")
	}
}

func TestExpiry(t *testing.T) {
	mk := func(value, source string, exp time.Time) Entry {
		p, err := parseValue(Client, value)
		if err != nil {
			t.Fatal(err)
		}
		return Entry{Kind: Client, Value: p.key, pat: p, Source: source, Expires: exp}
	}
	ix := newIndex(
		[]Entry{mk("192.0.2.0/24", "db", t0.Add(time.Hour)), mk("198.51.100.0/24", "db", t0.Add(time.Hour))},
		[]Entry{mk("192.0.2.0/24", "file", time.Time{})},
	)
	tests := []struct {
		addr   string
		at     time.Time
		source string
	}{
		{"198.51.100.1", t0.Add(time.Hour - time.Second), "db"},
		{"198.51.100.1", t0.Add(time.Hour), ""}, // expired exactly at expires_at
		{"192.0.2.1", t0, "db"},
		{"192.0.2.1", t0.Add(2 * time.Hour), "file"}, // an expired entry does not hide a live one
	}
	for _, tt := range tests {
		m := ix.match(rq(tt.addr, "", "", ""), tt.at)
		got := ""
		if len(m.Entries) > 0 {
			got = m.Entries[0].Source
		}
		if got != tt.source {
			t.Errorf("%s at %s: matched source %q, want %q", tt.addr, tt.at.Format(time.TimeOnly), got, tt.source)
		}
	}
}

func TestCheckSetsFacts(t *testing.T) {
	w := testWhitelist(t)
	st := &policy.State{Req: rq("192.0.2.5", "", "a@b.example", "u@x.example"), Now: t0}
	res, err := w.Check(context.Background(), st)
	if err != nil || !res.Action.IsDunno() {
		t.Fatalf("Check = %+v, %v; want DUNNO", res, err)
	}
	if !st.Facts.Skip.Has("greylist") || !st.Facts.Skip.Has("dnsbl") {
		t.Errorf("Skip = %v, want all", st.Facts.Skip)
	}
	want := "client 192.0.2.0/25 (testdata/whitelist_clients:23)"
	if st.Facts.Whitelist != want || !strings.Contains(res.Reason, want) {
		t.Errorf("Whitelist = %q, reason %q; want %q", st.Facts.Whitelist, res.Reason, want)
	}
	st = &policy.State{Req: rq("198.18.0.1", "", "a@b.example", "u@x.example"), Now: t0}
	if res, _ := w.Check(context.Background(), st); res.Reason != "" || st.Facts.Skip != nil || st.Facts.Whitelist != "" {
		t.Errorf("no match changed state: %+v %+v", res, st.Facts)
	}
}

// stub is a check that always answers the same action.
type stub struct {
	name string
	act  policy.Action
}

func (s stub) Name() string { return s.name }
func (s stub) Check(context.Context, *policy.State) (policy.Result, error) {
	return policy.Result{Action: s.act, Reason: s.name}, nil
}

// Through the real engine: what each kind bypasses, end to end.
func TestEngineBypasses(t *testing.T) {
	w := testWhitelist(t)
	reject := policy.Action{Verb: policy.Code, Code: "554", Text: "5.7.1 listed"}
	deferA := policy.Action{Verb: policy.DeferIfPermit, Text: "4.2.0 greylisted"}
	steps := []policy.Step{{Check: w}, {Check: stub{"dnsbl", reject}}, {Check: stub{"greylist", deferA}}}
	e := policy.NewEngine(policy.Options{Now: func() time.Time { return t0 }}, steps)
	noDNSBL := policy.NewEngine(policy.Options{Now: func() time.Time { return t0 }}, []policy.Step{steps[0], steps[2]})
	tests := []struct {
		name string
		e    *policy.Engine
		req  *policy.Request
		want policy.Action
	}{
		{"listed client passes everything", e, rq("192.0.2.5", "", "a@b.example", "u@x.example"), policy.DunnoAction},
		{"verified host passes everything", e, rq("198.18.0.1", "x.tickets.example.com", "a@b.example", "u@x.example"), policy.DunnoAction},
		{"sender entry still meets the DNSBL", e, rq("198.18.0.1", "", "bounces@z.example", "u@x.example"), reject},
		{"sender entry skips greylisting", noDNSBL, rq("198.18.0.1", "", "bounces@z.example", "u@x.example"), policy.DunnoAction},
		{"recipient entry still meets the DNSBL", e, rq("198.18.0.1", "", "a@b.example", "support@example.com"), reject},
		{"postmaster skips DNSBL and greylisting", e, rq("198.18.0.1", "", "a@b.example", "postmaster@x.example"), policy.DunnoAction},
		{"nothing listed is greylisted", noDNSBL, rq("198.18.0.1", "", "a@b.example", "u@x.example"), deferA},
	}
	for _, tt := range tests {
		if got := tt.e.Decide(context.Background(), tt.req, nil); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

// A bad edit keeps the lists in use; fixing it loads the new ones.
func TestReloadKeepsOldListsOnError(t *testing.T) {
	path := writeFile(t, "clients", "192.0.2.0/24\n")
	cfg := DefaultConfig()
	cfg.ClientsFiles = []string{path}
	w, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, out := rq("192.0.2.1", "", "", ""), rq("198.51.100.1", "", "", "")
	if err := os.WriteFile(path, []byte("198.51.100.0/24\n300.1.2.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("Reload error = %v, want it to name %s:2", err, path)
	}
	if len(w.Match(in, t0).Entries) != 1 || len(w.Match(out, t0).Entries) != 0 {
		t.Fatal("a failed reload changed the lists")
	}
	if err := os.WriteFile(path, []byte("198.51.100.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(w.Match(in, t0).Entries) != 0 || len(w.Match(out, t0).Entries) != 1 {
		t.Fatal("reload did not replace the lists")
	}
}

func TestNewRejectsBadFile(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClientsFiles = []string{"testdata/bad_clients"}
	if _, err := New(context.Background(), cfg, Options{}); err == nil {
		t.Fatal("New accepted a bad file")
	}
}

// A config reload can name other files; a bad one changes nothing.
func TestReconfigure(t *testing.T) {
	w := testWhitelist(t)
	listed := rq("192.0.2.5", "", "", "u@x.example")
	cfg := DefaultConfig()
	cfg.ClientsFiles = []string{"testdata/bad_clients"}
	if err := w.Reconfigure(cfg); err == nil {
		t.Fatal("Reconfigure accepted a bad file")
	}
	cfg.ClientsFiles, cfg.RoleRecipients = nil, []string{"@bad"}
	if err := w.Reconfigure(cfg); err == nil {
		t.Fatal("Reconfigure accepted a bad role recipient")
	}
	if len(w.Match(listed, t0).Entries) != 1 {
		t.Fatal("failed Reconfigure changed the lists")
	}
	cfg.RoleRecipients = []string{"hostmaster@"}
	apply, err := w.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Match(listed, t0).Entries) != 1 {
		t.Fatal("Prepare changed the lists before apply")
	}
	apply()
	if len(w.Match(listed, t0).Entries) != 0 {
		t.Error("client from a file no longer configured still matches")
	}
	if m := w.Match(rq("198.18.0.1", "", "", "hostmaster@x.example"), t0); skipString(m.Skip) != "dnsbl,greylist" {
		t.Errorf("new role recipient matched %q, skip %q", m, skipString(m.Skip))
	}
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(w.Match(listed, t0).Entries) != 0 {
		t.Error("Reload went back to the old config")
	}
}

// stubEOM refuses at END-OF-MESSAGE, as a byte quota over its limit.
type stubEOM struct{ stub }

func (s stubEOM) CheckEndOfMessage(ctx context.Context, st *policy.State) (policy.Result, error) {
	return s.Check(ctx, st)
}

// A client entry bypasses every check at END-OF-MESSAGE too, where the
// engine runs only the checks that decide there.
func TestEngineBypassesAtEndOfMessage(t *testing.T) {
	w := testWhitelist(t)
	quota := stubEOM{stub{"ratelimit", policy.Action{Verb: policy.DeferIfPermit, Text: "4.7.1 too much"}}}
	e := policy.NewEngine(policy.Options{Now: func() time.Time { return t0 }}, []policy.Step{{Check: w}, {Check: quota}})
	for client, want := range map[string]policy.Action{"192.0.2.5": policy.DunnoAction, "198.18.0.1": quota.act} {
		req := rq(client, "", "a@b.example", "")
		req.ProtocolState = "END-OF-MESSAGE"
		if got := e.Decide(context.Background(), req, nil); got != want {
			t.Errorf("%s at END-OF-MESSAGE: %s, want %s", client, got, want)
		}
	}
}
