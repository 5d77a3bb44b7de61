package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
)

// The PostgreSQL raw baseline: the least a DBA would type for the same
// result, sent over a pgx pool as large as the broker's backend pool, with no
// lease store, no token and no HTTP, each operation one simple-protocol round
// trip as psql -c sends it. Issue is one CREATE ROLE … LOGIN PASSWORD
// '<SCRAM verifier>' VALID UNTIL … IN ROLE <groups> (explicit grants: that,
// then GRANT USAGE and GRANT SELECT ON ALL TABLES, after rawGrantLock);
// revoke is DROP ROLE (explicit grants: DROP OWNED BY, then DROP ROLE, after
// rawGrantLock); renew is ALTER ROLE … VALID UNTIL. It is deliberately not a
// replay of the plugin's SQL: a baseline that copies the broker hides the
// broker's waste. The SCRAM verifier is computed client-side with the
// plugin's exported function, as a careful DBA's script would, so the
// password never reaches the server.
//
// Every statement starts with rawComment, so pg_stat_statements, which keys
// PostgreSQL 15's utility statements by their text, tells the raw side's
// statements from the plugin's.

// rawComment starts every statement of the raw baseline.
const rawComment = "/* bench raw */ "

// rawBaseline issues and removes users directly.
type rawBaseline struct {
	pool     *pgxpool.Pool
	prefix   string   // usernames are prefix + random suffix
	memberOf []string // groups, for member_of users
	grants   bool     // explicit grants: USAGE on public, SELECT on all its tables
}

func newRaw(ctx context.Context, url string, conns int32, prefix string) (*rawBaseline, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = conns
	cfg.MinConns = conns
	cfg.ConnConfig.RuntimeParams["application_name"] = "credbroker-bench-raw"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return &rawBaseline{pool: pool, prefix: prefix}, nil
}

func (r *rawBaseline) close() { r.pool.Close() }

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func tsLiteral(t time.Time) string {
	return quote(t.UTC().Format("2006-01-02 15:04:05.999999") + "+00")
}

// rawGrantLock serializes the explicit-grants batches, which change the
// same tables' ACLs: two sessions granting on one table at once make one of
// them fail with "tuple concurrently updated", so any script granting in
// parallel has to take a lock (the plugin takes one too). The multi-statement
// query is one implicit transaction, which holds the lock to its end.
const rawGrantLock = "SELECT pg_advisory_xact_lock(7431, 1)"

// rawBatch joins statements into one simple-protocol query, each starting
// with rawComment.
func rawBatch(stmts ...string) string {
	for i, st := range stmts {
		stmts[i] = rawComment + st
	}
	return strings.Join(stmts, "; ")
}

// issue creates a user with one statement (three for explicit grants) and
// returns its name.
func (r *rawBaseline) issue(ctx context.Context, ttl time.Duration) (string, error) {
	username := r.prefix + strings.ToLower(randText(10))
	password := plugins.NewPassword()
	verifier := postgres.SCRAMVerifier(password.Reveal())
	name := ident(username)
	create := "CREATE ROLE " + name + " LOGIN PASSWORD " + quote(verifier) + " VALID UNTIL " + tsLiteral(time.Now().Add(ttl))
	if len(r.memberOf) > 0 {
		groups := make([]string, len(r.memberOf))
		for i, g := range r.memberOf {
			groups[i] = ident(g)
		}
		create += " IN ROLE " + strings.Join(groups, ", ")
	}
	stmts := []string{create}
	if r.grants {
		stmts = append([]string{rawGrantLock}, create, "GRANT USAGE ON SCHEMA public TO "+name, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+name)
	}
	// One simple-protocol round trip, as psql -c would send it.
	if _, err := r.pool.Exec(ctx, rawBatch(stmts...), pgx.QueryExecModeSimpleProtocol); err != nil {
		return "", fmt.Errorf("raw issue %s: %w", username, err)
	}
	return username, nil
}

// renew moves VALID UNTIL.
func (r *rawBaseline) renew(ctx context.Context, username string, ttl time.Duration) error {
	_, err := r.pool.Exec(ctx, rawBatch("ALTER ROLE "+ident(username)+" VALID UNTIL "+tsLiteral(time.Now().Add(ttl))),
		pgx.QueryExecModeSimpleProtocol)
	return err
}

// revoke removes a user: DROP ROLE, after DROP OWNED BY for a user with
// explicit grants (its privileges are dependencies DROP ROLE refuses).
func (r *rawBaseline) revoke(ctx context.Context, username string) error {
	name := ident(username)
	stmts := []string{"DROP ROLE IF EXISTS " + name}
	if r.grants {
		stmts = []string{rawGrantLock, "DROP OWNED BY " + name, stmts[0]}
	}
	_, err := r.pool.Exec(ctx, rawBatch(stmts...), pgx.QueryExecModeSimpleProtocol)
	return err
}
