package whitelist

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// dialect opens one more connection pool on the same database each call,
// as a separate daemon on another host would.
type dialect struct {
	name string
	open func(t *testing.T) *db.DB
}

// dialects returns a fresh migrated database per store kind. PostgreSQL is
// a real server (pgtest); the test fails, never skips, without one.
func dialects(t *testing.T) []dialect {
	t.Helper()
	sqlitePath := filepath.Join(t.TempDir(), "mxpolicyd.db")
	pgDSN := pgtest.New(t)
	return []dialect{
		{"sqlite", func(t *testing.T) *db.DB { return openDB(t, sqlitePath) }},
		{"postgres", func(t *testing.T) *db.DB { return openDB(t, pgDSN) }},
	}
}

// openDB opens dsn, migrated, closed when the test ends.
func openDB(t testing.TB, dsn string) *db.DB { return dbtest.OpenDSN(t, dsn) }

func forEachDialect(t *testing.T, fn func(t *testing.T, d dialect)) {
	for _, d := range dialects(t) {
		t.Run(d.name, func(t *testing.T) { fn(t, d) })
	}
}

// version is the store's change counter; a failure to read it fails the
// test, so comparing two readings means something.
func version(t *testing.T, s *Store) int64 {
	t.Helper()
	v, err := s.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func values(t *testing.T, s *Store, f Filter) string {
	t.Helper()
	list, err := s.List(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list {
		out = append(out, string(e.Kind)+" "+e.Value)
	}
	return strings.Join(out, ", ")
}

func TestStoreAddRemoveList(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx := context.Background()
		clk := clocktest.New(t0)
		s := NewStore(dl.open(t), clk.Now)
		e, err := s.Add(ctx, Entry{Kind: "client", Value: "192.0.2.77/24", Comment: "partner relay",
			CreatedBy: "alice", Expires: t0.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if e.ID == 0 || e.Value != "192.0.2.0/24" || !e.CreatedAt.Equal(t0) {
			t.Errorf("Add returned %+v", e)
		}
		for _, in := range []Entry{
			{Kind: Sender, Value: "Bounce@Example.com"},
			{Kind: "hostname", Value: "*.mail.example.net"},
			{Kind: Recipient, Value: "support@example.com"},
		} {
			if _, err := s.Add(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		const all = "client 192.0.2.0/24, client_name .mail.example.net, recipient support@example.com, sender bounce@example.com"
		if got := values(t, s, Filter{}); got != all {
			t.Fatalf("List = %q, want %q", got, all)
		}
		got, err := s.List(ctx, Filter{Kind: Client})
		if err != nil || len(got) != 1 || got[0].Comment != "partner relay" || got[0].CreatedBy != "alice" ||
			!got[0].Expires.Equal(t0.Add(24*time.Hour)) || !got[0].CreatedAt.Equal(t0) {
			t.Errorf("List(client) = %+v, %v", got, err)
		}
		if got := values(t, s, Filter{Value: "EXAMPLE.COM"}); got != "recipient support@example.com, sender bounce@example.com" {
			t.Errorf("List(value) = %q", got)
		}
		clk.Set(t0.Add(24 * time.Hour))
		if got := values(t, s, Filter{Kind: Client}); got != "" {
			t.Errorf("expired entry listed: %q", got)
		}
		if got := values(t, s, Filter{Kind: Client, Expired: true}); got != "client 192.0.2.0/24" {
			t.Errorf("List(expired) = %q", got)
		}
		if n, err := s.Purge(ctx); err != nil || n != 1 {
			t.Errorf("Purge = %d, %v; want 1", n, err)
		}
		if got := values(t, s, Filter{Kind: Client, Expired: true}); got != "" {
			t.Errorf("after Purge, the expired entry is still stored: %q", got)
		}
		if err := s.Remove(ctx, Sender, "BOUNCE@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(ctx, Sender, "bounce@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Remove = %v, want ErrNotFound", err)
		}
		if got := values(t, s, Filter{}); got != "client_name .mail.example.net, recipient support@example.com" {
			t.Errorf("after removals List = %q", got)
		}
	})
}

// Bad values get a clear error and change nothing, not even the version
// every daemon polls.
func TestStoreRejectsBadValues(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx := context.Background()
		s := NewStore(dl.open(t), clocktest.New(t0).Now)
		if _, err := s.Add(ctx, Entry{Kind: Client, Value: "192.0.2.0/24"}); err != nil {
			t.Fatal(err)
		}
		v0 := version(t, s)
		bad := []struct {
			e    Entry
			want string
		}{
			{Entry{Kind: Client, Value: "192.0.2.0/24"}, "already exists"},
			{Entry{Kind: Client, Value: "192.0.2.1/24"}, "already exists"}, // same prefix once masked
			{Entry{Kind: Client, Value: "0.0.0.0/0"}, "too wide"},
			{Entry{Kind: Client, Value: "mail.example.com"}, "not an IP"},
			{Entry{Kind: "helo", Value: "x.example"}, "unknown kind"},
			{Entry{Kind: Sender, Value: "@example.com"}, "write example.com"},
			{Entry{Kind: Recipient, Value: "x@example.com", Expires: t0}, "not in the future"},
			{Entry{Kind: Recipient, Value: "x@example.com", Comment: strings.Repeat("c", 2000)}, "comment \"ccc"},
			{Entry{Kind: Recipient, Value: "x@example.com", CreatedBy: strings.Repeat("b", 1001)}, "creator \"bbb"},
			{Entry{Kind: ClientName, Value: "com"}, `"com" would cover the whole domain com`},
			{Entry{Kind: ClientName, Value: "/.*/"}, `"/.*/" matches the empty string`},
			{Entry{Kind: Sender, Value: "/@/"}, `"/@/" matches addresses of unrelated organisations`},
			{Entry{Kind: Recipient, Value: "x@example.com", Comment: "ok\x1b[31mred"}, "comment \"ok\\x1b[31mred\": control character U+001B"},
			{Entry{Kind: Recipient, Value: "x@example.com", Comment: "two\nlines"}, "control character U+000A"},
			{Entry{Kind: Recipient, Value: "x@example.com", CreatedBy: "eve\r"}, "creator \"eve\\r\""},
		}
		for _, b := range bad {
			if _, err := s.Add(ctx, b.e); err == nil || !strings.Contains(err.Error(), b.want) {
				t.Errorf("Add(%s %q) error = %v, want %q", b.e.Kind, b.e.Value, err, b.want)
			}
		}
		if err := s.Remove(ctx, Client, "not-an-ip"); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Remove(bad value) = %v, want a validation error", err)
		}
		if err := s.Remove(ctx, ClientName, "com"); err == nil || !strings.Contains(err.Error(), "at least 2 labels") {
			t.Errorf("Remove(client_name com) = %v, want the refusal", err)
		}
		if v := version(t, s); v != v0 {
			t.Errorf("version moved from %d to %d on failed changes", v0, v)
		}
		if got := values(t, s, Filter{Expired: true}); got != "client 192.0.2.0/24" {
			t.Errorf("List = %q after bad values", got)
		}
	})
}

func TestStoreImport(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx := context.Background()
		s := NewStore(dl.open(t), clocktest.New(t0).Now)
		f, err := os.Open("testdata/whitelist_clients")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		opt := ImportOptions{Format: FormatClients, Name: "whitelist_clients", Comment: "from postgrey", CreatedBy: "import"}
		res, err := s.Import(ctx, f, opt)
		if err != nil || res != (ImportResult{Added: 12}) {
			t.Fatalf("Import = %+v, %v; want 12 added", res, err)
		}
		list, err := s.List(ctx, Filter{Kind: Client, Value: "2001:db8:1::25"})
		if err != nil || len(list) != 1 || list[0].CreatedBy != "import" ||
			list[0].Comment != "from postgrey: IPv6 outbound relays (postgrey accepts IPv6 since 1.36, CIDR since 1.37)" {
			t.Errorf("imported entry = %+v, %v", list, err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		if res, err := s.Import(ctx, f, opt); err != nil || res != (ImportResult{Existing: 12}) {
			t.Errorf("re-Import = %+v, %v; want 12 existing", res, err)
		}
		v0 := version(t, s)
		// All or nothing: the good lines of a bad file are not imported.
		in := strings.NewReader("new.example.com\n198.51.100.0/24\nnot a host\n")
		opt.Name = "bad_clients"
		if _, err := s.Import(ctx, in, opt); err == nil || !strings.Contains(err.Error(), "bad_clients:3:") {
			t.Errorf("bad Import error = %v, want it to name bad_clients:3", err)
		}
		for _, bad := range []struct{ file, want string }{
			{"new.example.com\ncom\n", "bad_clients:2: \"com\" would cover"},
			{"new.example.com\n/.*/\n", "bad_clients:2: \"/.*/\" matches the empty string"},
			{"# escape \x1b[2J in a comment\nnew.example.com\n", "bad_clients:2: whitelist: comment"},
		} {
			if _, err := s.Import(ctx, strings.NewReader(bad.file), opt); err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("Import(%q) error = %v, want %q", bad.file, err, bad.want)
			}
		}
		recips := strings.NewReader("postmaster@\nsupport@example.com\n")
		if res, err := s.Import(ctx, recips, ImportOptions{Format: FormatRecipients, Expires: t0}); err == nil {
			t.Errorf("Import with past expiry = %+v, want error", res)
		}
		if _, err := s.Import(ctx, strings.NewReader("x@example.com\n"), ImportOptions{}); err == nil {
			t.Error("Import without a format succeeded")
		}
		if v := version(t, s); v != v0 {
			t.Errorf("failed imports moved the version from %d to %d", v0, v)
		}
		if got := values(t, s, Filter{Value: "new.example.com"}); got != "" {
			t.Errorf("a failed import left %q", got)
		}
	})
}

// A row the rules now refuse (stored by hand, or before the rule) is
// skipped by the daemons and can still be removed as written.
func TestStoreRemovesRefusedRow(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx := context.Background()
		s := NewStore(dl.open(t), clocktest.New(t0).Now)
		execSQL(t, s, "INSERT INTO whitelist (kind, value, created_at) VALUES ('client_name', 'com', 0)",
			"INSERT INTO whitelist (kind, value, created_at) VALUES ('client_name', 'com', now())")
		if err := s.Remove(ctx, "hostname", " com "); err != nil {
			t.Fatalf("Remove(stored refused value) = %v", err)
		}
		if got := values(t, s, Filter{Expired: true}); got != "" {
			t.Errorf("after Remove List = %q", got)
		}
		if err := s.Remove(ctx, Client, "192.0.2.1"); !errors.Is(err, ErrNotFound) ||
			strings.Count(err.Error(), "whitelist:") != 1 {
			t.Errorf("Remove(absent) = %v, want ErrNotFound once prefixed", err)
		}
	})
}

// A refusal of what the caller wrote matches ErrInvalid, and says which
// part is wrong; an entry already there is ErrExists, named once; neither
// changes anything.
func TestStoreClassifiesRefusals(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx := context.Background()
		s := NewStore(dl.open(t), clocktest.New(t0).Now)
		if _, err := s.Add(ctx, Entry{Kind: Client, Value: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Add(ctx, Entry{Kind: Client, Value: "192.0.2.1"})
		if !errors.Is(err, ErrExists) || errors.Is(err, ErrInvalid) || err.Error() != "whitelist: entry already exists: client 192.0.2.1" {
			t.Errorf("Add(duplicate) = %v, want ErrExists named once", err)
		}
		long := strings.Repeat("x", 1001)
		for _, e := range []struct {
			e    Entry
			want string
		}{
			{Entry{Kind: Client, Value: "300.1.1.1"}, "bad client value"},
			{Entry{Kind: "helo", Value: "x.example"}, "unknown kind"},
			{Entry{Kind: Client, Value: "192.0.2.2", Comment: long}, "whitelist: comment \"" + long[:64] + "\"... is 1001 bytes long, at most 1000"},
			{Entry{Kind: Client, Value: "192.0.2.2", CreatedBy: long}, "whitelist: creator \"" + long[:64] + "\"... is 1001 bytes long, at most 1000"},
			{Entry{Kind: Client, Value: "192.0.2.2", CreatedBy: "a\x00"}, "creator"},
			{Entry{Kind: Client, Value: "192.0.2.2", Expires: t0}, "not in the future"},
		} {
			if _, err := s.Add(ctx, e.e); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), e.want) {
				t.Errorf("Add(%+v) = %v, want ErrInvalid saying %q", e.e, err, e.want)
			}
		}
		if err := s.Remove(ctx, Client, "0.0.0.0/0"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Remove(0.0.0.0/0) = %v, want ErrInvalid", err)
		}
		if err := s.Remove(ctx, Client, "192.0.2.9"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
			t.Errorf("Remove(absent) = %v, want ErrNotFound alone", err)
		}
		opt := ImportOptions{Format: FormatClients, Name: "list"}
		for _, in := range []string{"ok.example.com\nnot a host\n", "ok.example.com\n/o/\n", strings.Repeat("x", 70000)} {
			if _, err := s.Import(ctx, strings.NewReader(in), opt); !errors.Is(err, ErrInvalid) {
				t.Errorf("Import(%.20q) = %v, want ErrInvalid", in, err)
			}
		}
		if _, err := s.Import(ctx, strings.NewReader("x"), ImportOptions{Format: "hosts"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Import(format hosts) = %v, want ErrInvalid", err)
		}
		failing := io.MultiReader(strings.NewReader("ok.example.com\n"), iotest.ErrReader(syscall.EIO))
		if _, err := s.Import(ctx, failing, opt); err == nil || errors.Is(err, ErrInvalid) {
			t.Errorf("Import(failing reader) = %v, want an error that is not ErrInvalid", err)
		}
	})
}

// Two daemons on one database: a change made through one is matched by
// the other after its next poll, removal included, and a change made by
// hand in SQL too (the triggers bump the version).
func TestPropagation(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx := context.Background()
		clk := clocktest.New(t0)
		admin := NewStore(dl.open(t), clk.Now)
		a := newDBWhitelist(t, dl.open(t), clk)
		b := newDBWhitelist(t, dl.open(t), clk)
		req := rq("198.51.100.7", "", "a@b.example", "u@x.example")
		if _, err := admin.Add(ctx, Entry{Kind: Client, Value: "198.51.100.0/24", Expires: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		for _, w := range []*Checker{a, b} {
			if len(w.Match(req, clk.Now()).Entries) != 0 {
				t.Fatal("matched before refreshing")
			}
			refresh(t, w)
			if m := w.Match(req, clk.Now()); len(m.Entries) != 1 || !strings.Contains(m.String(), "database id") {
				t.Fatalf("after refresh matched %q", m)
			}
		}
		if len(b.Match(req, t0.Add(time.Hour)).Entries) != 0 {
			t.Error("expired database entry matched")
		}
		if err := admin.Remove(ctx, Client, "198.51.100.0/24"); err != nil {
			t.Fatal(err)
		}
		refresh(t, b)
		if len(b.Match(req, clk.Now()).Entries) != 0 {
			t.Fatal("removed entry still matched")
		}
		execSQL(t, admin, "INSERT INTO whitelist (kind, value, created_at) VALUES ('client', '198.51.100.0/24', 0)",
			"INSERT INTO whitelist (kind, value, created_at) VALUES ('client', '198.51.100.0/24', now())")
		execSQL(t, admin, "INSERT INTO whitelist (kind, value, created_at) VALUES ('client', 'garbage', 0)",
			"INSERT INTO whitelist (kind, value, created_at) VALUES ('client', 'garbage', now())")
		refresh(t, b)
		if len(b.Match(req, clk.Now()).Entries) != 1 {
			t.Fatal("entry inserted by hand not matched; a bad row must not hide the good ones")
		}
	})
}

// Run delivers a change within the promised second or two.
func TestRunPicksUpChanges(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cfg := DefaultConfig()
		cfg.Refresh = minRefresh
		w, err := New(ctx, cfg, Options{Store: NewStore(dl.open(t), nil)})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		admin := NewStore(dl.open(t), nil)
		if _, err := admin.Add(ctx, Entry{Kind: Sender, Value: "example.org"}); err != nil {
			t.Fatal(err)
		}
		req := rq("198.51.100.7", "", "a@example.org", "u@x.example")
		deadline := time.Now().Add(2 * time.Second)
		for len(w.Match(req, time.Now()).Entries) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("change not picked up within 2s")
			}
			time.Sleep(10 * time.Millisecond) // waiting for a condition, not a step of the logic
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	})
}

func newDBWhitelist(t *testing.T, d *db.DB, clk *clocktest.Clock) *Checker {
	t.Helper()
	w, err := New(context.Background(), DefaultConfig(), Options{Store: NewStore(d, clk.Now)})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func refresh(t *testing.T, w *Checker) {
	t.Helper()
	if err := w.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func execSQL(t *testing.T, s *Store, sqliteSQL, pgSQL string) {
	t.Helper()
	ctx := context.Background()
	var err error
	if s.db.IsPostgres() {
		_, err = s.db.PG.Exec(ctx, pgSQL)
	} else {
		_, err = s.db.SQL.ExecContext(ctx, sqliteSQL)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// An entry that has expired but is not purged yet (gc runs daily) is as
// good as gone: importing or adding its value again makes a live entry,
// where ON CONFLICT DO NOTHING kept the dead row and said "already
// present". A live entry is still left alone.
func TestAddOverExpiredEntry(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		ctx := context.Background()
		clk := clocktest.New(t0)
		s := NewStore(dl.open(t), clk.Now)
		for _, v := range []string{"192.0.2.0/24", "198.51.100.0/24"} {
			if _, err := s.Add(ctx, Entry{Kind: Client, Value: v, Expires: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		clk.Set(t0.Add(2 * time.Hour)) // both expired, not purged
		res, err := s.Import(ctx, strings.NewReader("192.0.2.0/24\n"), ImportOptions{Format: FormatClients, CreatedBy: "admin"})
		if err != nil || res.Added != 1 || res.Existing != 0 {
			t.Fatalf("import over an expired entry: %+v, %v; want 1 added", res, err)
		}
		if _, err := s.Add(ctx, Entry{Kind: Client, Value: "198.51.100.0/24"}); err != nil {
			t.Fatalf("add over an expired entry: %v", err)
		}
		if got := values(t, s, Filter{}); got != "client 192.0.2.0/24, client 198.51.100.0/24" {
			t.Errorf("listed: %q", got)
		}
		w, err := New(ctx, Config{Refresh: time.Second}, Options{Store: s})
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range []string{"192.0.2.9", "198.51.100.9"} {
			if m := w.Match(rq(ip, "", "a@b.example", "u@x.example"), clk.Now()); len(m.Entries) == 0 {
				t.Errorf("%s: the renewed entry does not match", ip)
			}
		}
		if _, err := s.Add(ctx, Entry{Kind: Client, Value: "192.0.2.0/24"}); !errors.Is(err, ErrExists) {
			t.Errorf("add over a live entry: %v, want ErrExists", err)
		}
	})
}

// A valid value written by hand in a form of its own is removed as listed.
func TestRemoveHandWrittenForm(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dl dialect) {
		s := NewStore(dl.open(t), clocktest.New(t0).Now)
		execSQL(t, s, "INSERT INTO whitelist (kind, value, created_at) VALUES ('client_name', 'Mail.Example.COM', 0)",
			"INSERT INTO whitelist (kind, value, created_at) VALUES ('client_name', 'Mail.Example.COM', now())")
		if err := s.Remove(context.Background(), ClientName, "Mail.Example.COM"); err != nil {
			t.Errorf("remove as listed: %v", err)
		}
		if got := values(t, s, Filter{}); got != "" {
			t.Errorf("left: %q", got)
		}
	})
}
