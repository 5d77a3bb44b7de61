package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
)

// The raw baseline: what an operator's own script would send to PostgreSQL
// to do what the broker does, statement for statement the SQL of
// plugins/postgres (plugin.go createSteps, revoke.go, Renew), over a pgx pool
// as large as the broker's backend pool, with no lease store, no token and no
// HTTP. The SCRAM verifier is computed client-side with the plugin's own
// exported function, as the plugin does.

// Keep in step with plugins/postgres/sql.go.
const (
	markerRole          = "credbroker_managed"
	grantLockKey  int64 = 0x637265646272_6b72
	terminateWait       = 5000
)

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

// issue creates a user in one transaction, as Plugin.Create does, and
// returns its name.
func (r *rawBaseline) issue(ctx context.Context, ttl time.Duration) (string, error) {
	username := r.prefix + strings.ToLower(randText(10))
	password := plugins.NewPassword()
	verifier := postgres.SCRAMVerifier(password.Reveal())
	name := ident(username)
	steps := []string{
		"CREATE ROLE " + name + " LOGIN PASSWORD " + quote(verifier) + " VALID UNTIL " + tsLiteral(time.Now().Add(ttl)),
		"GRANT " + ident(markerRole) + " TO " + name,
	}
	for _, g := range r.memberOf {
		steps = append(steps, "GRANT "+ident(g)+" TO "+name)
	}
	var lock bool
	if r.grants {
		lock = true
		steps = append(steps,
			"GRANT USAGE ON SCHEMA "+ident("public")+" TO "+name,
			"GRANT SELECT ON ALL TABLES IN SCHEMA "+ident("public")+" TO "+name)
	}
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		for i, s := range steps {
			if lock && i == len(steps)-2 {
				if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", grantLockKey); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("raw issue %s: %w", username, err)
	}
	return username, nil
}

// renew moves VALID UNTIL, as Plugin.Renew does.
func (r *rawBaseline) renew(ctx context.Context, username string, ttl time.Duration) error {
	_, err := r.pool.Exec(ctx, "ALTER ROLE "+ident(username)+" VALID UNTIL "+tsLiteral(time.Now().Add(ttl)))
	return err
}

// revoke removes a user the way Plugin.Revoke does: look it up (and check it
// is managed), NOLOGIN, terminate its sessions, REASSIGN/DROP OWNED (under
// the grant lock) where pg_shdepend says it holds anything, DROP ROLE,
// terminate again.
func (r *rawBaseline) revoke(ctx context.Context, username string) error {
	name := ident(username)
	var (
		oid     uint32
		managed bool
		comment *string
	)
	err := r.pool.QueryRow(ctx, `
		SELECT r.oid,
		       EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
		               WHERE m.member = r.oid AND g.rolname = $2),
		       shobj_description(r.oid, 'pg_authid')
		FROM pg_roles r WHERE r.rolname = $1`, username, markerRole).Scan(&oid, &managed, &comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if !managed {
		return fmt.Errorf("%s is not a member of %s", username, markerRole)
	}
	if _, err := r.pool.Exec(ctx, "ALTER ROLE "+name+" NOLOGIN"); err != nil {
		return err
	}
	terminate := func() error {
		_, err := r.pool.Exec(ctx, `
			SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity
			WHERE usesysid = $1 AND pid <> pg_backend_pid()`, oid, terminateWait)
		return err
	}
	if err := terminate(); err != nil {
		return err
	}
	rows, err := r.pool.Query(ctx, `
		SELECT coalesce(d.datname, current_database()), bool_or(s.deptype = 'a')
		FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
		WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1
		GROUP BY 1 ORDER BY 1`, oid)
	if err != nil {
		return err
	}
	type dep struct {
		db  string
		acl bool
	}
	deps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dep, error) {
		var d dep
		return d, row.Scan(&d.db, &d.acl)
	})
	if err != nil {
		return err
	}
	for _, d := range deps {
		// The bench's users hold privileges only in the database the pool
		// is connected to.
		err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			if d.acl {
				if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", grantLockKey); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, "REASSIGN OWNED BY "+name+" TO CURRENT_USER"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "DROP OWNED BY "+name)
			return err
		})
		if err != nil {
			return fmt.Errorf("drop owned in %s: %w", d.db, err)
		}
	}
	if _, err := r.pool.Exec(ctx, "DROP ROLE IF EXISTS "+name); err != nil {
		return err
	}
	return terminate()
}
