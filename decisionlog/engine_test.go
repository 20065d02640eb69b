package decisionlog

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// checkFunc adapts a function to policy.Check.
type checkFunc struct {
	name string
	f    func(st *policy.State) policy.Result
}

func (c checkFunc) Name() string { return c.name }
func (c checkFunc) Check(_ context.Context, st *policy.State) (policy.Result, error) {
	return c.f(st), nil
}

// The engine's decisions reach the table through the Writer as the
// reports expect them: the deciding check, the normalized verb, the
// whitelist entry, observe mode.
func TestEngineRecordsThroughWriter(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		w := New(d, DefaultConfig(), Options{Host: "mx1", Tick: make(chan time.Time)})
		steps := []policy.Step{
			{Check: checkFunc{"whitelist", func(st *policy.State) policy.Result {
				if st.Req.ClientAddress == netip.MustParseAddr("192.0.2.1") {
					st.Facts.Whitelist = "client 192.0.2.1"
					st.Facts.Skip = st.Facts.Skip.With("all")
				}
				return policy.Pass("")
			}}},
			{Check: checkFunc{"dnsbl", func(st *policy.State) policy.Result {
				if st.Req.ClientAddress == netip.MustParseAddr("203.0.113.9") {
					return policy.Result{Action: policy.Action{Verb: policy.Code, Code: "554", Text: "5.7.1 listed"}, Reason: "listed"}
				}
				return policy.Pass("")
			}}},
			{Check: checkFunc{"greylist", func(st *policy.State) policy.Result {
				return policy.Result{Action: policy.Action{Verb: policy.DeferIfPermit, Text: "4.2.0 Greylisted"}, Reason: "new triplet"}
			}}},
		}
		clock := func() time.Time { return t0 }
		for _, observe := range []bool{false, true} {
			e := policy.NewEngine(policy.Options{Observe: observe, Now: clock, Logger: slog.New(slog.DiscardHandler), Record: []policy.Recorder{w}}, steps)
			for _, c := range []string{"192.0.2.1", "203.0.113.9", "198.51.100.1"} {
				req := &policy.Request{ProtocolState: "RCPT", ClientAddress: netip.MustParseAddr(c),
					Sender: "a@example.net", Recipient: "b@example.org", Instance: "i1"}
				e.Decide(ctx, req, nil)
			}
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		q := `SELECT check_name || '/' || verb || '/' || action || '/' || whitelist || '/' ||
			CASE WHEN observe THEN 'observe' ELSE 'enforce' END FROM decisions`
		// pgx.Rows and *sql.Rows both read this way.
		var rows interface {
			Next() bool
			Scan(dest ...any) error
		}
		var err error
		if d.IsPostgres() {
			rows, err = d.PG.Query(ctx, q)
		} else {
			rows, err = d.SQL.QueryContext(ctx, q)
		}
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got[s]++
		}
		want := map[string]int{
			"whitelist/DUNNO/DUNNO/client 192.0.2.1/enforce":           1,
			"dnsbl/REJECT/554 5.7.1 listed//enforce":                   1,
			"greylist/DEFER/DEFER_IF_PERMIT 4.2.0 Greylisted//enforce": 1,
			"whitelist/DUNNO/DUNNO/client 192.0.2.1/observe":           1,
			"dnsbl/REJECT/DUNNO//observe":                              1,
			"greylist/DEFER/DUNNO//observe":                            1,
		}
		if len(got) != len(want) {
			t.Fatalf("rows %v, want %v", got, want)
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("rows %v, want %v", got, want)
				break
			}
		}
	})
}
