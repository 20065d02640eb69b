package replies_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/replies"
)

const maxAge = 35 * 24 * time.Hour

// counts is an Observer that counts.
type counts struct {
	mu                sync.Mutex
	recorded, matched int
	ops               []string
}

func (c *counts) ReplyRecorded() { c.mu.Lock(); c.recorded++; c.mu.Unlock() }
func (c *counts) ReplyMatched()  { c.mu.Lock(); c.matched++; c.mu.Unlock() }
func (c *counts) StoreOp(op string, _ time.Duration, _ error) {
	c.mu.Lock()
	c.ops = append(c.ops, op)
	c.mu.Unlock()
}

// rig is a check on the embedded store and an observer.
type rig struct {
	t     *testing.T
	c     *replies.Checker
	obs   *counts
	store replies.Store
}

func newRig(t *testing.T, cfg replies.Config, readOnly bool) *rig {
	t.Helper()
	obs := &counts{}
	store := replies.NewStore(dbtest.Open(t, db.SQLite))
	c, err := replies.New(cfg, store, replies.Options{MaxAge: maxAge, Observer: obs, ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, c: c, obs: obs, store: store}
}

// send is a local user's authenticated submission at t0+at.
func (r *rig) send(at time.Duration, from, to string) policy.Result {
	r.t.Helper()
	st := state(at, from, to)
	st.Req.SASLUsername = "alice"
	res, err := r.c.Check(context.Background(), st)
	if err != nil {
		r.t.Fatal(err)
	}
	if st.Facts.Skip.Has(greylist.Name) {
		r.t.Errorf("send %s -> %s: an authenticated request skips nothing", from, to)
	}
	return res
}

// receive is inbound mail at t0+at; it reports whether greylisting is
// skipped, and checks the reason agrees.
func (r *rig) receive(at time.Duration, from, to string) bool {
	r.t.Helper()
	st := state(at, from, to)
	res, err := r.c.Check(context.Background(), st)
	if err != nil {
		r.t.Fatal(err)
	}
	if !res.Action.IsDunno() {
		r.t.Errorf("receive %s -> %s: %v, want DUNNO: the check never decides", from, to, res.Action)
	}
	skip := st.Facts.Skip.Has(greylist.Name)
	if skip != (res.Reason == replies.Reason) {
		r.t.Errorf("receive %s -> %s: skip %v with reason %q", from, to, skip, res.Reason)
	}
	return skip
}

func state(at time.Duration, from, to string) *policy.State {
	req := &policy.Request{ProtocolState: "RCPT", ClientAddress: netip.MustParseAddr("192.0.2.7"),
		Sender: from, Recipient: to, Instance: "1"}
	return &policy.State{Req: req, Msg: policy.NewMessage("1"), Now: t0.Add(at)}
}

func TestReplySkipsGreylisting(t *testing.T) {
	r := newRig(t, replies.DefaultConfig(), false)
	r.send(0, "Alice@Example.org", "Bob@Example.net")
	if r.obs.recorded != 1 {
		t.Fatalf("recorded %d pairs, want 1", r.obs.recorded)
	}
	if !r.receive(time.Hour, "bob@example.net", "alice@example.org") {
		t.Error("reply from the address written to is greylisted")
	}
	// BATV and case: the same sender key as greylisting's.
	if !r.receive(time.Hour, "prvs=1234abcd=BOB@example.net", "ALICE@example.org") {
		t.Error("BATV-signed reply is greylisted")
	}
	for _, m := range [][2]string{
		{"carol@example.net", "alice@example.org"}, // another address of the domain
		{"bob@example.net", "eve@example.org"},     // to another local user
		{"", "alice@example.org"},                  // a bounce
	} {
		if r.receive(time.Hour, m[0], m[1]) {
			t.Errorf("%s -> %s skips greylisting", m[0], m[1])
		}
	}
	if r.obs.matched != 2 {
		t.Errorf("matched %d, want 2", r.obs.matched)
	}
}

// match: address is one mailbox: writing to a numeric address (common at
// qq.com, 163.com) or one with a year in it lets that address reply, not
// every address greylisting's normalization would give the same key.
func TestReplyAddressIsOneMailbox(t *testing.T) {
	r := newRig(t, replies.DefaultConfig(), false)
	r.send(0, "alice@example.org", "12345678@qq.com")
	r.send(0, "alice@example.org", "john.1985@gmail.com")
	for _, from := range []string{"12345678@qq.com", "John.1985@Gmail.com", "john.1985+re@gmail.com"} {
		if !r.receive(time.Hour, from, "alice@example.org") {
			t.Errorf("the reply from %s is greylisted", from)
		}
	}
	for _, stranger := range []string{"87654321@qq.com", "1@qq.com", "john.2001@gmail.com"} {
		if r.receive(time.Hour, stranger, "alice@example.org") {
			t.Errorf("%s skips greylisting to alice, who wrote to 12345678@qq.com and john.1985@gmail.com", stranger)
		}
	}
}

func TestReplyExpires(t *testing.T) {
	r := newRig(t, replies.DefaultConfig(), false)
	r.send(0, "alice@example.org", "bob@example.net")
	if !r.receive(maxAge, "bob@example.net", "alice@example.org") {
		t.Error("reply at max age is greylisted")
	}
	if r.receive(maxAge+time.Second, "bob@example.net", "alice@example.org") {
		t.Error("reply after max age skips greylisting")
	}
	// Writing again renews it.
	r.send(maxAge+time.Minute, "alice@example.org", "bob@example.net")
	if !r.receive(2*maxAge, "bob@example.net", "alice@example.org") {
		t.Error("renewed pair does not match")
	}
}

func TestReplyDomainMode(t *testing.T) {
	cfg := replies.DefaultConfig()
	cfg.Match = replies.MatchDomain
	r := newRig(t, cfg, false)
	r.send(0, "alice@example.org", "bob@example.net")
	if !r.receive(time.Hour, "carol@Example.NET", "alice@example.org") {
		t.Error("another address of the domain is greylisted in domain mode")
	}
	if r.receive(time.Hour, "mallory@example.com", "alice@example.org") {
		t.Error("another domain skips greylisting")
	}
}

// TestNotRecorded: the null sender, local recipients and addresses
// without a domain are never recorded.
func TestNotRecorded(t *testing.T) {
	cfg := replies.DefaultConfig()
	cfg.LocalDomains = []string{"Example.COM."}
	r := newRig(t, cfg, false)
	for _, m := range [][2]string{
		{"", "bob@example.net"},                  // null sender
		{"alice@example.org", "<>"},              // no recipient
		{"alice@example.org", "eve@example.org"}, // the sender's own domain
		{"alice@example.org", "dan@example.com"}, // replies.local_domains
		{"alice@example.org", "postmaster"},      // no domain
	} {
		r.send(0, m[0], m[1])
	}
	if r.obs.recorded != 0 || len(r.obs.ops) != 0 {
		t.Errorf("recorded %d, store calls %v; want none", r.obs.recorded, r.obs.ops)
	}
	if r.receive(time.Hour, "eve@example.org", "alice@example.org") {
		t.Error("local sender skips greylisting")
	}
}

// The check command's read-only checker records nothing, and still
// matches the pairs the daemon recorded.
func TestReadOnlyRecordsNothing(t *testing.T) {
	r := newRig(t, replies.DefaultConfig(), true)
	r.send(0, "alice@example.org", "bob@example.net")
	if r.obs.recorded != 0 || slices.Contains(r.obs.ops, replies.OpRecord) {
		t.Errorf("read-only check: recorded %d, store calls %v; want no record", r.obs.recorded, r.obs.ops)
	}
	if r.receive(time.Hour, "bob@example.net", "alice@example.org") {
		t.Error("read-only check recorded a pair")
	}
	if err := r.store.Record(context.Background(), t0, replies.Pair{Local: "alice@example.org", Outside: "carol@example.net", OutsideDomain: "example.net"}); err != nil {
		t.Fatal(err)
	}
	if !r.receive(time.Hour, "carol@example.net", "alice@example.org") {
		t.Error("read-only check does not match a recorded pair")
	}
}

func TestAlreadyExemptSparesTheLookup(t *testing.T) {
	r := newRig(t, replies.DefaultConfig(), false)
	st := state(0, "bob@example.net", "alice@example.org")
	st.Facts.Skip = st.Facts.Skip.With(greylist.Name)
	if _, err := r.c.Check(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if len(r.obs.ops) != 0 {
		t.Errorf("store calls %v for a request greylisting already skips", r.obs.ops)
	}
}

// A miss is remembered for a minute, so repeated mail from the same
// correspondent costs one query; this daemon's own record ends that at
// once, and another daemon's record is seen when the minute is over.
func TestMissesAreCached(t *testing.T) {
	r := newRig(t, replies.DefaultConfig(), false)
	queries := func() (n int) {
		r.obs.mu.Lock()
		defer r.obs.mu.Unlock()
		for _, op := range r.obs.ops {
			if op == replies.OpMatch {
				n++
			}
		}
		return n
	}
	for i := range 3 {
		if r.receive(time.Duration(i)*time.Second, "bob@example.net", "alice@example.org") {
			t.Fatal("no reply recorded, yet greylisting is skipped")
		}
	}
	if n := queries(); n != 1 {
		t.Errorf("%d lookups for three misses within a minute, want 1", n)
	}
	r.send(10*time.Second, "alice@example.org", "bob@example.net")
	if !r.receive(11*time.Second, "bob@example.net", "alice@example.org") {
		t.Error("a pair this daemon just recorded is still a cached miss")
	}

	// Another daemon on the same database records carol's pair.
	other, err := replies.New(replies.DefaultConfig(), r.store, replies.Options{MaxAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	r.receive(20*time.Second, "carol@example.net", "alice@example.org") // a miss, cached
	st := state(21*time.Second, "alice@example.org", "carol@example.net")
	st.Req.SASLUsername = "alice"
	if _, err := other.Check(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if r.receive(30*time.Second, "carol@example.net", "alice@example.org") {
		t.Error("cached miss not used within its minute")
	}
	if !r.receive(81*time.Second, "carol@example.net", "alice@example.org") {
		t.Error("another daemon's pair not seen once the cached miss expired")
	}
}

// failing is a store that is down.
type failing struct{ replies.Store }

var errDown = errors.New("down")

func (failing) Match(context.Context, time.Time, replies.Pair, bool) (bool, error) {
	return false, errDown
}
func (failing) Record(context.Context, time.Time, replies.Pair) error { return errDown }

func TestStoreErrorIsReturned(t *testing.T) {
	c, err := replies.New(replies.DefaultConfig(), failing{}, replies.Options{MaxAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	for _, sasl := range []string{"", "alice"} {
		st := state(0, "bob@example.net", "alice@example.org")
		if sasl != "" {
			st = state(0, "alice@example.org", "bob@example.net")
		}
		st.Req.SASLUsername = sasl
		if _, err := c.Check(context.Background(), st); !errors.Is(err, errDown) {
			t.Errorf("sasl %q: error %v, want the store's", sasl, err)
		}
		if st.Facts.Skip.Has(greylist.Name) {
			t.Errorf("sasl %q: a failed lookup skips greylisting", sasl)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []replies.Config{
		{Match: "sender"},
		{Match: replies.MatchAddress, LocalDomains: []string{"user@example.org"}},
		{Match: replies.MatchAddress, LocalDomains: []string{""}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := replies.DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}

// Quick passes what needs no lookup (a cached miss, no pair to look up)
// and leaves a lookup and every submission to Check.
func TestQuick(t *testing.T) {
	r := newRig(t, replies.DefaultConfig(), false)
	quick := func(st *policy.State) bool {
		res, ok := r.c.Quick(st)
		if ok && (!res.Action.IsDunno() || st.Facts.Skip.Has(greylist.Name)) {
			t.Errorf("Quick %s -> %s: %+v, skip %v; want a plain pass", st.Req.Sender, st.Req.Recipient, res, st.Facts.Skip)
		}
		return ok
	}
	if quick(state(0, "bob@example.net", "alice@example.org")) {
		t.Error("a pair never looked up is answered without a lookup")
	}
	r.receive(0, "bob@example.net", "alice@example.org") // a miss, cached
	if !quick(state(time.Second, "bob@example.net", "alice@example.org")) {
		t.Error("a cached miss needs a lookup")
	}
	if !quick(state(0, "", "alice@example.org")) {
		t.Error("the null sender, never a correspondent, needs a lookup")
	}
	sub := state(0, "alice@example.org", "bob@example.net")
	sub.Req.SASLUsername = "alice"
	if quick(sub) {
		t.Error("a submission, which records its pair, is answered without the store")
	}
	// A submission with no pair to record (to the user's own domain)
	// needs no store, and must not count as the store answering in time.
	local := state(0, "alice@example.org", "carol@example.org")
	local.Req.SASLUsername = "alice"
	if !quick(local) {
		t.Error("a submission with nothing to record goes to the store")
	}
}
