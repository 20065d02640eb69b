package report

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// The example queries of docs/reporting.md run on PostgreSQL as written.
func TestReadmeQueriesRun(t *testing.T) {
	b, err := os.ReadFile("../docs/reporting.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	if len(blocks) < 6 {
		t.Fatalf("found %d sql blocks, want at least 6", len(blocks))
	}
	d := dbtest.Open(t, db.Postgres)
	fixture(t, d)
	ctx := dbtest.Context(t)
	for _, blk := range blocks {
		for _, q := range strings.Split(blk[1], ";") {
			if strings.TrimSpace(stripComments(q)) == "" {
				continue
			}
			rows, err := d.PG.Query(ctx, q)
			if err == nil {
				rows.Close()
				err = rows.Err()
			}
			if err != nil {
				t.Errorf("%v\n%s", err, q)
			}
		}
	}
}

func stripComments(q string) string {
	var b strings.Builder
	for _, l := range strings.Split(q, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
