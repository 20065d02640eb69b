package greylist_test

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// --client takes "an address (keyed by its network, as requests are), a
// network of greylist.ipv4_prefix/ipv6_prefix bits, or a key" (README,
// "Greylisting"): every spelling of one address or network selects the
// same triplets, as every spelling of it in a request gets the same key.
func TestAdminClientSpellingsIPv6(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		cfg := greylist.DefaultConfig()
		s, a := greylist.NewStore(d), greylist.NewAdmin(d, cfg)
		t0 := time.Now().Truncate(time.Second).Add(-time.Hour)
		decideAt(t, s, cfg, t0, "2001:db8::7", "alice@a.test", "bob@b.test")
		decideAt(t, s, cfg, t0, "::ffff:192.0.2.7", "carol@c.test", "bob@b.test")
		for _, tc := range []struct{ client, sender string }{
			{"2001:db8::7", "alice@a.test"},
			{"2001:DB8:0:0:0:0:0:7", "alice@a.test"},
			{"2001:db8::1:2:3:4", "alice@a.test"}, // another host of the /64
			{"2001:db8::/64", "alice@a.test"},
			{"2001:0DB8:0000::/64", "alice@a.test"},
			{"net:2001:db8::/64", "alice@a.test"},
			{"192.0.2.7", "carol@c.test"},
			{"::ffff:192.0.2.7", "carol@c.test"},
			{"192.0.2.0/24", "carol@c.test"},
			{"::ffff:192.0.2.0/120", "carol@c.test"}, // the /24, IPv4-mapped, as whitelist and allowed_clients take it
		} {
			rows, _, err := a.List(ctx, greylist.Filter{Selector: greylist.Selector{Client: tc.client}})
			if err != nil {
				t.Errorf("--client %s: %v", tc.client, err)
				continue
			}
			if len(rows) != 1 || rows[0].Sender != tc.sender {
				t.Errorf("--client %s: %d rows %+v, want %s's triplet", tc.client, len(rows), rows, tc.sender)
			}
		}
	})
}

// greylist list prints an IPv4-compatible client (::/96) alike from
// both stores, as PostgreSQL's inet prints it (db.InetText).
func TestAdminListIPv4CompatibleClient(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		cfg := greylist.DefaultConfig()
		s, a := greylist.NewStore(d), greylist.NewAdmin(d, cfg)
		decideAt(t, s, cfg, time.Now().Truncate(time.Second).Add(-time.Hour), "::192.0.2.7", "dave@d.test", "bob@b.test")
		rows, _, err := a.List(ctx, greylist.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].ClientAddr != "::192.0.2.7" {
			t.Fatalf("listed %+v; want one triplet from ::192.0.2.7", rows)
		}
	})
}
