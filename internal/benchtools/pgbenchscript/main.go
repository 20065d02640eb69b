// Command pgbenchscript writes the pgbench custom script of
// scripts/bench.sh's database ceiling: the daemon's own greylisting
// statement (pgDecide in greylist/pgstore.go), read from the greylist
// source so the ceiling cannot drift from what the daemon runs, with its
// parameters replaced by pgbench variables that make every transaction a
// new triplet. Run from the repository root:
//
//	go run ./internal/benchtools/pgbenchscript > scripts/bench/greylist-upsert.sql
//
// The script is for "pgbench -M prepared": each variable becomes a bound
// parameter, as pgx binds the daemon's (pgbench docs, "Custom Scripts").
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/mxpolicyd/mxpolicyd/greylist"
)

// statement is the name of the greylist constant measured.
const statement = "pgDecide"

func main() {
	src := flag.String("src", "greylist", "directory of the greylist package's source")
	flag.Parse()
	if err := run(*src, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pgbenchscript:", err)
		os.Exit(1)
	}
}

func run(src string, w io.Writer) error {
	consts, err := stringConsts(src)
	if err != nil {
		return err
	}
	sql, ok := consts[statement]
	if !ok {
		return fmt.Errorf("no string constant %s in %s", statement, src)
	}
	body, err := bind(sql, params(greylist.DefaultConfig()))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s;\n", header, strings.TrimSpace(body))
	return err
}

// header draws a new triplet per transaction: 65,536 client networks
// (mxpolicyd-load's client space, cmd/mxpolicyd-load/gen.go) times 10^9
// senders times 10^9 recipients.
const header = `-- scripts/bench.sh's database ceiling: greylist's pgDecide (greylist/pgstore.go),
-- one new triplet per transaction. Generated, do not edit:
--   go run ./internal/benchtools/pgbenchscript > scripts/bench/greylist-upsert.sql
-- Run with: pgbench -n -M prepared -f scripts/bench/greylist-upsert.sql
\set c random(0, 65535)
\set h random(1, 254)
\set s random(1, 1000000000)
\set r random(1, 1000000000)
`

// params are SQL expressions for pgDecide's $1 to $15, in the order of
// pgDecideArgs (greylist/pgstore.go): the Key of KeyFor (client network
// "net:10.c.0/24", addresses and names shaped like mxpolicyd-load's), the
// cutoffs of newCutoffs at the default delays, and the AWL settings.
func params(cfg greylist.Config) map[int]string {
	const ip = `('10.0.0.0'::inet + :c * 256)`
	now := `date_trunc('second', now())`
	ago := func(d interface{ Seconds() float64 }) string {
		return fmt.Sprintf("(%s - interval '%d seconds')", now, int64(d.Seconds()))
	}
	return map[int]string{
		1:  fmt.Sprintf(`('%s:' || network(set_masklen(%s, %d)))`, greylist.KindNet, ip, cfg.IPv4Prefix),
		2:  `('user' || :s || '@sender' || :s || '.example')`,
		3:  `('rcpt' || :r || '@example.net')`,
		4:  fmt.Sprintf(`'%s'::text`, greylist.KindNet),
		5:  fmt.Sprintf(`network(set_masklen(%s, %d))`, ip, cfg.IPv4Prefix),
		6:  `('10.0.0.0'::inet + (:c * 256 + :h))`,
		7:  `('user' || :s || '@sender' || :s || '.example')`,
		8:  `('sender' || :s || '.example')`,
		9:  "(" + now + ")",
		10: ago(cfg.Delay),
		11: ago(cfg.RetryWindow),
		12: ago(cfg.MaxAge),
		13: ago(cfg.AWLCountInterval),
		14: strconv.Itoa(cfg.AWLClientPasses),
		15: strconv.FormatBool(cfg.AWLPair),
	}
}

var placeholder = regexp.MustCompile(`\$[0-9]+`)

// bind replaces every $N of sql by its expression, and fails when the
// statement's parameters and ours differ: a changed statement must
// change this program too.
func bind(sql string, exprs map[int]string) (string, error) {
	used := map[int]bool{}
	var bad error
	out := placeholder.ReplaceAllStringFunc(sql, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		e, ok := exprs[n]
		if !ok && bad == nil {
			bad = fmt.Errorf("%s uses %s, which this program does not bind", statement, p)
		}
		used[n] = true
		return e
	})
	if bad != nil {
		return "", bad
	}
	for n := range exprs {
		if !used[n] {
			return "", fmt.Errorf("%s no longer uses $%d: update this program's params", statement, n)
		}
	}
	if strings.Contains(out, ";") {
		return "", fmt.Errorf("%s contains a semicolon: pgbench would split it", statement)
	}
	return out, nil
}

// stringConsts evaluates the package-level string constants of the
// non-test files in dir that are literals joined with "+".
func stringConsts(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	exprs := map[string]ast.Expr{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if i < len(vs.Values) {
							exprs[id.Name] = vs.Values[i]
						}
					}
				}
			}
		}
	}
	out := map[string]string{}
	for name, e := range exprs {
		if v, ok := evalString(e, exprs, 0); ok {
			out[name] = v
		}
	}
	return out, nil
}

// evalString folds a constant string expression; ok is false for anything
// else (numbers, iota, calls).
func evalString(e ast.Expr, exprs map[string]ast.Expr, depth int) (string, bool) {
	if depth > 32 {
		return "", false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.ParenExpr:
		return evalString(e.X, exprs, depth+1)
	case *ast.Ident:
		if x, ok := exprs[e.Name]; ok {
			return evalString(x, exprs, depth+1)
		}
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			a, ok1 := evalString(e.X, exprs, depth+1)
			b, ok2 := evalString(e.Y, exprs, depth+1)
			return a + b, ok1 && ok2
		}
	}
	return "", false
}
