package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// pg_stat_statements over one measurement: which statements PostgreSQL
// spent its time on, in the scenario's store and backend databases. The
// module must be preloaded (.ci/pg-stat-statements, which `make bench`
// runs); without it the report says so in one line.
//
// PostgreSQL 15 keys a utility statement (CREATE ROLE, GRANT, DROP ROLE …)
// by its text, so every user's CREATE ROLE is an entry of its own. The
// report groups entries whose texts differ only in literals and quoted
// names, which also keeps the SCRAM verifiers in CREATE ROLE … PASSWORD out
// of it.

// topStatements is how many statement groups the report prints.
const topStatements = 15

// stmtWindow is pg_stat_statements being read around a measurement.
type stmtWindow struct {
	admin   *pgx.ConnConfig   // the postgres database, where the extension is
	dbs     map[string]string // database name → "store" / "backend"
	dealloc int64             // pg_stat_statements_info.dealloc at the start
	note    string            // why there is nothing to read, when there is not
}

// stmtGroup is the statements of one database whose texts differ only in
// literals and quoted names.
type stmtGroup struct {
	db      string // "store" / "backend"
	query   string // normalized
	calls   int64
	totalMS float64
}

// stmtProfile is what a stmtWindow saw.
type stmtProfile struct {
	label   string
	note    string // why there are no groups
	groups  []stmtGroup
	entries int   // pg_stat_statements entries read
	dealloc int64 // entries evicted during the window
}

// startStatements resets pg_stat_statements for the databases of dbs. When
// the extension cannot be used the window only carries the reason.
func startStatements(tb testing.TB, adminURL string, dbs map[string]string) *stmtWindow {
	tb.Helper()
	w := &stmtWindow{dbs: dbs}
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		tb.Fatalf("pg_stat_statements: parse the admin URL: %v", err)
	}
	cfg.Database = "postgres"
	w.admin = cfg
	err = w.with(func(ctx context.Context, c *pgx.Conn) error {
		if err := c.QueryRow(ctx, `SELECT dealloc FROM pg_stat_statements_info`).Scan(&w.dealloc); err != nil {
			return err
		}
		_, err := c.Exec(ctx, `SELECT pg_stat_statements_reset(0, d.oid, 0) FROM pg_database d WHERE d.datname = ANY($1)`,
			slices.Collect(maps.Keys(dbs)))
		return err
	})
	if err != nil {
		w.note = "pg_stat_statements is not available (" + firstLine(plugins.SanitizeString(err.Error())) +
			"); run .ci/pg-stat-statements (make bench does) to see which statements take the time"
		tb.Logf("%s", w.note)
	}
	return w
}

// with runs f on a connection to the postgres database.
func (w *stmtWindow) with(f func(ctx context.Context, c *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, w.admin)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return f(ctx, c)
}

// collect reads what the databases ran since startStatements, grouped.
func (w *stmtWindow) collect(tb testing.TB, label string) *stmtProfile {
	tb.Helper()
	p := &stmtProfile{label: label, note: w.note}
	if w.note != "" {
		return p
	}
	byKey := map[[2]string]*stmtGroup{}
	err := w.with(func(ctx context.Context, c *pgx.Conn) error {
		var dealloc int64
		if err := c.QueryRow(ctx, `SELECT dealloc FROM pg_stat_statements_info`).Scan(&dealloc); err != nil {
			return err
		}
		p.dealloc = dealloc - w.dealloc
		rows, err := c.Query(ctx, `
			SELECT d.datname, s.query, s.calls, s.total_exec_time + s.total_plan_time
			FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
			WHERE d.datname = ANY($1)`, slices.Collect(maps.Keys(w.dbs)))
		if err != nil {
			return err
		}
		var db, query string
		var calls int64
		var total float64
		_, err = pgx.ForEachRow(rows, []any{&db, &query, &calls, &total}, func() error {
			p.entries++
			k := [2]string{w.dbs[db], normalizeStatement(query)}
			g := byKey[k]
			if g == nil {
				g = &stmtGroup{db: k[0], query: k[1]}
				byKey[k] = g
			}
			g.calls += calls
			g.totalMS += total
			return nil
		})
		return err
	})
	if err != nil {
		p.note = "pg_stat_statements could not be read: " + firstLine(plugins.SanitizeString(err.Error()))
		tb.Logf("%s", p.note)
		return p
	}
	for _, g := range byKey {
		p.groups = append(p.groups, *g)
	}
	slices.SortFunc(p.groups, func(a, b stmtGroup) int {
		return cmp.Or(cmp.Compare(b.totalMS, a.totalMS), strings.Compare(a.query, b.query))
	})
	return p
}

// Literals and quoted names, and runs of white space.
var (
	stmtString = regexp.MustCompile(`'(?:[^']|'')*'`)
	stmtIdent  = regexp.MustCompile(`"(?:[^"]|"")*"`)
	stmtSpace  = regexp.MustCompile(`\s+`)
)

// normalizeStatement replaces string literals by '…' and quoted names by
// "…", and folds white space.
func normalizeStatement(q string) string {
	q = stmtString.ReplaceAllLiteralString(q, "'…'")
	q = stmtIdent.ReplaceAllLiteralString(q, `"…"`)
	return strings.TrimSpace(stmtSpace.ReplaceAllLiteralString(q, " "))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// truncate cuts s to n characters, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// print writes the top statement groups by total time.
func (p *stmtProfile) print(w io.Writer) {
	if p.note != "" {
		fmt.Fprintf(w, "\npg_stat_statements: %s\n", p.note)
		return
	}
	var total float64
	for _, g := range p.groups {
		total += g.totalMS
	}
	fmt.Fprintf(w, "\npg_stat_statements during %s:\n", p.label)
	fmt.Fprintf(w, "%d entries in %d groups (texts differing only in literals and quoted names; raw-side statements start with %q),\n",
		p.entries, len(p.groups), strings.TrimSpace(rawComment))
	fmt.Fprintf(w, "%.0f ms of statement time in all; the top %d by total time:\n", total, min(topStatements, len(p.groups)))
	if p.dealloc > 0 {
		fmt.Fprintf(w, "(pg_stat_statements evicted entries %d times meanwhile: the totals undercount; raise pg_stat_statements.max)\n", p.dealloc)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "db\tcalls\tmean ms\ttotal ms\tshare\tquery\t")
	for i, g := range p.groups {
		if i == topStatements {
			break
		}
		share := 0.0
		if total > 0 {
			share = 100 * g.totalMS / total
		}
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.0f\t%.0f%%\t%s\t\n", g.db, g.calls, g.totalMS/float64(max(g.calls, 1)), g.totalMS, share, truncate(g.query, 80))
	}
	tw.Flush()
}
