package db

import (
	"net/netip"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// InetText prints every address as a real PostgreSQL prints it
// (host(inet)), including those Go prints otherwise.
func TestInetTextIsPostgresText(t *testing.T) {
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range []string{
		"192.0.2.1", "2001:db8::7", "::1", "::", "::ffff:192.0.2.1", "::ffff:0:0",
		"::192.0.2.1", "::1.0.0.0", "::0.1.0.0", "::0.0.1.2", "::0.0.0.1", "::1:102:304",
		"1::102:304", "::ffff:0:102:304", "fe80::1%eth0",
	} {
		a := netip.MustParseAddr(s)
		var want string
		if err := conn.QueryRow(ctx, "SELECT host($1::inet)", a.WithZone("").String()).Scan(&want); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got := InetText(a); got != want {
			t.Errorf("InetText(%s) = %q; PostgreSQL prints %q", s, got, want)
		}
	}
}
