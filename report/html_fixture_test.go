package report

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// htmlNow is the instant the HTML tests render at: a week of traffic
// ends here.
var htmlNow = time.Date(2026, 11, 7, 17, 30, 0, 0, time.UTC)

// hostile is client-supplied text that would run script if a page
// printed it unescaped.
const hostile = `<script>alert("x")</script>`

// week fills d with a week of an MX's decisions up to htmlNow, the same
// for every seed: plain accepts, whitelisted clients, greylisted triplets
// that came back after a few minutes to a few hours (some with the
// X-Greylist header), spam engines that never retried, DNS list and SPF
// rejections, a first day in observe mode, and the greylist_triplet rows
// that go with them. With evil, one spam client's name, HELO and sender
// are markup.
func week(t *testing.T, d *db.DB, evil bool) {
	t.Helper()
	f := &filler{rnd: rand.New(rand.NewPCG(1, 2))}
	start := htmlNow.Add(-6 * 24 * time.Hour).Truncate(24 * time.Hour)
	for day := 0; day < 7; day++ {
		t0 := start.Add(time.Duration(day) * 24 * time.Hour)
		observe := day == 0
		n := 260 + f.rnd.IntN(140)
		if wd := t0.Weekday(); wd == time.Saturday || wd == time.Sunday {
			n -= 120 // a quieter weekend
		}
		for i := 0; i < n; i++ {
			at := t0.Add(time.Duration(f.rnd.IntN(24*3600)) * time.Second)
			if at.After(htmlNow) {
				continue
			}
			f.request(at, observe)
		}
	}
	for i := 0; i < 9; i++ { // one busy spam engine, many recipients
		f.spamTriplet(start.Add(time.Duration(30+i*7)*time.Hour), "198.51.100.23", "", "mailer.198-51-100-23.example", fmt.Sprintf("x%d@promo.example", i))
	}
	if evil {
		// The oldest pending triplet, so the page shows it at any Top.
		f.spamTriplet(start, "203.0.113.66", hostile, `"><img src=x>`, hostile+"@evil.example")
	}
	ctx := dbtest.Context(t)
	if err := decisionlog.Insert(ctx, d, f.rows); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.triplets {
		insertTriplet(t, d, p)
	}
}

type filler struct {
	rnd      *rand.Rand
	rows     []decisionlog.Row
	triplets []tripletRow
	seq      int
}

// tripletRow is a greylist_triplet row; a zero passed is pending.
type tripletRow struct {
	client, sender, rcpt string
	first, last, passed  time.Time
	attempts, passes     int
}

func (f *filler) add(r decisionlog.Row) {
	r.Host = "mx1.example.org"
	if r.Recipient == "" {
		r.Recipient = fmt.Sprintf("user%d@example.org", f.rnd.IntN(40))
	}
	if r.Verb == "" {
		r.Verb = r.Action
	}
	f.rows = append(f.rows, r)
}

// request adds one decision drawn from a busy MX's mix.
func (f *filler) request(at time.Time, observe bool) {
	f.seq++
	c := fmt.Sprintf("192.0.2.%d", 1+f.rnd.IntN(250))
	host := fmt.Sprintf("mail%d.example.net", f.rnd.IntN(60))
	sender := fmt.Sprintf("news%d@example.net", f.rnd.IntN(90))
	base := decisionlog.Row{Time: at, Client: netip.MustParseAddr(c), ClientName: host, Helo: host, Sender: sender}
	switch x := f.rnd.IntN(100); {
	case x < 46:
		base.Action = "DUNNO"
		f.add(base)
	case x < 54:
		base.Action, base.Check, base.Whitelist = "DUNNO", "whitelist", "client 192.0.2.0/24"
		f.add(base)
	case x < 70:
		f.greylisted(base, observe)
	case x < 80:
		// A few engines send most of it.
		engine := 1 + int(math.Pow(f.rnd.Float64(), 3)*50)
		f.spamTriplet(at, fmt.Sprintf("203.0.113.%d", engine), "unknown",
			fmt.Sprintf("ylmf-pc%d", f.rnd.IntN(9)), fmt.Sprintf("%s@%s.example", word(f.rnd), word(f.rnd)))
	case x < 94:
		f.listed(base, observe)
	case x < 97:
		base.Check, base.Reason = "spf", "spf fail"
		f.refuse(base, "550 5.7.23 SPF fail", "REJECT", observe)
	default:
		base.Check, base.Action, base.Reason = "spf", "WARN SPF softfail", "spf softfail"
		base.Verb = "WARN"
		f.add(base)
	}
}

// refuse adds base as a refusal, or in observe mode as a DUNNO that
// would have been it.
func (f *filler) refuse(base decisionlog.Row, action, verb string, observe bool) {
	base.Verb = verb
	if observe {
		base.Action, base.WouldAction, base.Observe = "DUNNO", action, true
	} else {
		base.Action = action
	}
	f.add(base)
}

var lists = []string{"zen.spamhaus.org", "zen.spamhaus.org", "zen.spamhaus.org", "b.barracudacentral.org",
	"bl.spamcop.net,b.barracudacentral.org", "psbl.surriel.com", "bl.mailspike.net"}

func (f *filler) listed(base decisionlog.Row, observe bool) {
	base.Client = netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 30+f.rnd.IntN(200)))
	base.ClientName = "unknown"
	base.Check = "dnsbl"
	base.Reason = "listed " + lists[f.rnd.IntN(len(lists))] + " (score 10)"
	f.refuse(base, "REJECT 5.7.1 Service unavailable; client listed", "REJECT", observe)
}

// greylisted adds a legitimate sender's deferral, maybe an early retry,
// and its pass after a delay most often of minutes, sometimes hours.
func (f *filler) greylisted(base decisionlog.Row, observe bool) {
	base.Check, base.Reason = "greylist", "new triplet"
	base.Recipient = fmt.Sprintf("user%d@example.org", f.rnd.IntN(40))
	f.refuse(base, "DEFER_IF_PERMIT 4.2.0 Greylisted, please try again in 120 seconds", "DEFER", observe)
	if observe {
		return
	}
	delay := retryDelay(f.rnd)
	pass := base.Time.Add(delay)
	if pass.After(htmlNow) {
		f.triplets = append(f.triplets, tripletRow{client: base.Client.String(), sender: base.Sender,
			rcpt: base.Recipient, first: base.Time, last: base.Time, attempts: 1})
		return
	}
	p := base
	p.Time, p.Check, p.Reason, p.Delay = pass, "", "delayed", delay
	p.Action, p.Verb = "DUNNO", "DUNNO"
	if f.rnd.IntN(3) > 0 {
		p.Action = fmt.Sprintf("PREPEND X-Greylist: delayed %d seconds", int(delay.Seconds()))
		p.Verb = "PREPEND"
	}
	f.add(p)
	f.triplets = append(f.triplets, tripletRow{client: base.Client.String(), sender: base.Sender,
		rcpt: base.Recipient, first: base.Time, last: pass, passed: pass, attempts: 2, passes: 1})
}

// retryDelay draws a retry delay: the queue-run intervals of real MTAs
// cluster between 2 and 15 minutes, with a tail to hours.
func retryDelay(r *rand.Rand) time.Duration {
	switch x := r.IntN(100); {
	case x < 8:
		return time.Duration(120+r.IntN(180)) * time.Second
	case x < 55:
		return time.Duration(300+r.IntN(600)) * time.Second
	case x < 75:
		return time.Duration(900+r.IntN(900)) * time.Second
	case x < 90:
		return time.Duration(1800+r.IntN(1800)) * time.Second
	case x < 97:
		return time.Duration(3600+r.IntN(3*3600)) * time.Second
	}
	return time.Duration(6*3600+r.IntN(20*3600)) * time.Second
}

// spamTriplet adds one to three deferrals of a triplet that never passes.
func (f *filler) spamTriplet(at time.Time, client, name, helo, sender string) {
	base := decisionlog.Row{Time: at, Client: netip.MustParseAddr(client), ClientName: name, Helo: helo,
		Sender: sender, Recipient: fmt.Sprintf("user%d@example.org", f.rnd.IntN(40)), Check: "greylist",
		Reason: "new triplet", Action: "DEFER_IF_PERMIT 4.2.0 Greylisted", Verb: "DEFER"}
	n := 1 + f.rnd.IntN(3)
	last := at
	for i := 0; i < n && !last.After(htmlNow); i++ {
		base.Time = last
		f.add(base)
		last = last.Add(time.Duration(30+f.rnd.IntN(60)) * time.Second)
	}
	f.triplets = append(f.triplets, tripletRow{client: client, sender: sender, rcpt: base.Recipient,
		first: at, last: base.Time, attempts: n})
}

func word(r *rand.Rand) string {
	ws := []string{"cheap", "pharma", "promo", "win", "deal", "offer", "lucky", "bonus"}
	return ws[r.IntN(len(ws))]
}

// insertTriplet writes p into greylist_triplet, keyed by the client's /24
// as greylisting keys it.
func insertTriplet(t *testing.T, d *db.DB, p tripletRow) {
	t.Helper()
	addr := netip.MustParseAddr(p.client)
	net := netip.PrefixFrom(addr, 24).Masked()
	var passed any
	ctx := dbtest.Context(t)
	var err error
	if d.IsPostgres() {
		if !p.passed.IsZero() {
			passed = p.passed
		}
		_, err = d.PG.Exec(ctx, `INSERT INTO greylist_triplet VALUES ($1, $2, $3, 'net', $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT DO NOTHING`, "net:"+net.String(), p.sender, p.rcpt, net, addr, p.sender,
			p.first, p.last, passed, p.attempts, p.passes)
	} else {
		if !p.passed.IsZero() {
			passed = p.passed.Unix()
		}
		_, err = d.SQL.ExecContext(ctx, `INSERT OR IGNORE INTO greylist_triplet VALUES (?, ?, ?, 'net', ?, ?, ?, ?, ?, ?, ?, ?)`,
			"net:"+net.String(), p.sender, p.rcpt, net.String(), addr.String(), p.sender,
			p.first.Unix(), p.last.Unix(), passed, p.attempts, p.passes)
	}
	if err != nil {
		t.Fatal(err)
	}
}
