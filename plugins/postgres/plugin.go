package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Plugin issues and removes users of one PostgreSQL server. It is safe for
// concurrent use; make one with [Driver.Open].
type Plugin struct {
	pool    *pgxpool.Pool
	base    *pgxpool.Config // copied for the per-database pools of Revoke
	adminDB string          // the admin connection's current_database()
	version int             // the server's server_version_num
	target  target
	secrets []secret.Value // the admin DSN and its password; see Secrets
	// passwords hashes the passwords of the next Creates ahead of time.
	passwords *passwords

	mu        sync.Mutex
	dbPools   map[string]*pgxpool.Pool // by database name, made lazily by poolFor
	closed    bool
	closeOnce sync.Once
}

var (
	_ plugins.TypedPlugin[*Role]        = (*Plugin)(nil)
	_ plugins.TypedStateUpgrader[*Role] = (*Plugin)(nil)
	_ plugins.Warner                    = (*Plugin)(nil)
	_ plugins.SecretHolder              = (*Plugin)(nil)
	_ plugins.PasswordMaker             = (*Plugin)(nil)
)

// target is where issued credentials point.
type target struct {
	host, port, database, sslmode string
}

// perDatabaseConns is the size of each pool Revoke opens to clean up in a
// database other than the admin DSN's.
const perDatabaseConns = 2

// open connects with c. configure, when not nil, edits the pool
// configuration before the pool is made (tests install tracers with it).
// Its errors are sanitized here: there is no plugin yet whose Secrets the
// decorator could redact.
func open(ctx context.Context, c *Connection, configure func(*pgxpool.Config)) (*Plugin, error) {
	dsn, err := c.DSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(dsn.Reveal())
	if err != nil {
		return nil, plugins.Sanitize(fmt.Errorf("open: parse the DSN in %s: %w", c.DSN, err), dsn)
	}
	p := &Plugin{
		secrets: []secret.Value{dsn},
		dbPools: make(map[string]*pgxpool.Pool),
	}
	if cfg.ConnConfig.Password != "" {
		p.secrets = append(p.secrets, secret.New(cfg.ConnConfig.Password))
	}
	if !c.adminPassword.IsZero() {
		cfg.ConnConfig.Password = c.adminPassword.Reveal()
		p.secrets = append(p.secrets, c.adminPassword)
	}
	cfg.MaxConns = c.MaxConns
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "credbroker"
	}
	// Holders may create functions in schemas such as public. With them on
	// the admin's search_path, a holder's public.shobj_description(oid, text)
	// would win overload resolution over pg_catalog's and run as the admin.
	// The broker's own statements see the catalog only; the operator's
	// statements get PostgreSQL's default path (see operatorPath).
	cfg.ConnConfig.RuntimeParams["search_path"] = adminSearchPath
	if configure != nil {
		configure(cfg)
	}
	p.base = cfg.Copy()
	p.target = target{
		host:     cmp.Or(c.Host, cfg.ConnConfig.Host),
		port:     strconv.Itoa(cmp.Or(c.Port, int(cfg.ConnConfig.Port))),
		database: cmp.Or(c.Database, cfg.ConnConfig.Database),
		sslmode:  sslMode(dsn.Reveal()),
	}
	if p.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, plugins.Sanitize(fmt.Errorf("open: %w", err), p.secrets...)
	}
	if err := p.setup(ctx); err != nil {
		p.pool.Close()
		return nil, plugins.Sanitize(fmt.Errorf("open: %w", classify(err)), p.secrets...)
	}
	p.passwords = startPasswords()
	return p, nil
}

// setup learns the admin database and the server version, creates the
// marker role if it is missing (tolerating another replica creating it at the
// same time), and takes back from users an older release issued the power
// their marker membership gave them (see upgradeMarker).
func (p *Plugin) setup(ctx context.Context) error {
	var exists bool
	err := p.pool.QueryRow(ctx,
		`SELECT current_database(), current_setting('server_version_num')::int,
		        EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, markerRole,
	).Scan(&p.adminDB, &p.version, &exists)
	if err != nil {
		return err
	}
	if !exists {
		_, err = p.pool.Exec(ctx, "CREATE ROLE "+ident(markerRole)+" NOLOGIN")
		switch sqlState(err) {
		case "", pgerrcode.DuplicateObject, pgerrcode.UniqueViolation:
		default:
			return fmt.Errorf("create marker role %s: %w", markerRole, err)
		}
	}
	return p.upgradeMarker(ctx)
}

// Secrets returns the admin DSN and its password, which the decorator of
// [plugins.Open] redacts from every error and warning the plugin returns.
func (p *Plugin) Secrets() []secret.Value { return slices.Clone(p.secrets) }

// NewPassword returns a password made as [plugins.NewPassword] makes one,
// whose SCRAM verifier is usually computed already, off the request path:
// the Create of that password uses it once. Create computes the verifier of
// any other password itself.
func (p *Plugin) NewPassword() secret.Value {
	if p.passwords == nil {
		return plugins.NewPassword()
	}
	return p.passwords.take()
}

// step is one statement of a transaction; what describes it in errors and
// never holds a secret.
type step struct {
	what string
	sql  string
	args []any
	// prepare asks [pipeline] to prepare the statement on each connection
	// and reuse it: for a statement of constant text run on every Create,
	// whose planning would cost more than its execution.
	prepare bool
}

// Create makes the user in one transaction: the role with a SCRAM verifier,
// VALID UNTIL req.ExpiresAt and membership of the role's member_of groups,
// the comment that marks it as the plugin's, on PostgreSQL 16+ membership of
// credbroker_managed WITH INHERIT FALSE, SET FALSE, then the role's grants
// or creation statements. Before the transaction commits it checks the new
// user, and every role it is a member of, against the rules of
// [Plugin.CheckRole], and rolls back when one is too strong (creation
// statements are free SQL; a group may have become stronger since start).
// The plaintext password is never sent to the server.
//
// A role without creation statements is made in one round trip: the
// statements and the check are pipelined as one implicit transaction, so
// the catalog locks they take are held only while the server runs them (see
// [pipeline]). Creation statements run one by one in an explicit
// transaction, as does a Create whose check failed, to say why.
//
// The response's State holds what Revoke will need: the role's
// revocation_statements and reassign_owned_to as they are now.
func (p *Plugin) Create(ctx context.Context, req plugins.CreateOf[*Role]) (plugins.CreateResponse, error) {
	var st []byte
	steps, err := p.createSteps(req)
	if err == nil {
		st, err = stateOf(req.Spec).encode()
	}
	if err == nil {
		err = p.create(ctx, req, steps)
	}
	if sqlState(err) == pgerrcode.ProgramLimitExceeded {
		// "row is too big": a table's ACL is full of per-user grants. Every
		// issue with explicit grants fails from here on.
		err = fmt.Errorf("%w (a table's access list is full of per-user grants: PostgreSQL holds about 2 400 of them on a table; use member_of)", err)
	}
	if err != nil {
		return plugins.CreateResponse{}, fmt.Errorf("create role %s: %w", ident(req.Username), err)
	}
	return plugins.CreateResponse{Credential: p.credential(req.Username, req.Password), State: st}, nil
}

// create runs steps and the check of the new user: in one pipeline when
// the statements are the plugin's own, else step by step. A pipeline whose
// check failed has rolled back; the step-by-step run that follows finds what
// is too strong and names it in its error (or, should a group have changed
// back meanwhile, makes the user).
func (p *Plugin) create(ctx context.Context, req plugins.CreateOf[*Role], steps []step) error {
	stepByStep := func() error {
		return p.inTx(ctx, p.pool, steps, func(tx pgx.Tx) error {
			return checkNewUser(ctx, tx, req.Username, p.version, req.Spec.ReassignOwnedTo)
		})
	}
	if len(req.Spec.CreationStatements) > 0 {
		return stepByStep()
	}
	check := step{
		what:    "check the new role",
		sql:     newUserCheckQuery(p.version),
		args:    []any{req.Username, dangerousPredefinedRoles, forbiddenRoles(req.Spec.ReassignOwnedTo)},
		prepare: true,
	}
	all := append(slices.Clip(steps), check)
	err := pipeline(ctx, p.pool, all)
	if failedStep(err) == len(steps) && sqlState(err) == pgerrcode.InvalidTextRepresentation {
		return stepByStep()
	}
	return classify(err)
}

func (p *Plugin) createSteps(req plugins.CreateOf[*Role]) ([]step, error) {
	role := req.Spec
	if role == nil {
		return nil, errors.New("no role spec given")
	}
	if err := checkUsername(req.Username); err != nil {
		return nil, err
	}
	if err := checkPassword(req.Password); err != nil {
		return nil, err
	}
	if req.ExpiresAt.IsZero() {
		return nil, errors.New("no expiry given: a user must expire")
	}
	name := ident(req.Username)
	verifier := p.passwords.verifier(req.Password)
	lock := step{what: "wait for the grant lock", sql: "SELECT pg_advisory_xact_lock($1)", args: []any{grantLockKey}}
	var steps []step
	if len(role.CreationStatements) > 0 {
		// The statements are the operator's; they grant, so they take the lock.
		steps = append(steps, lock, operatorPath)
		vals := templateValues{name: req.Username, verifier: verifier, expiration: req.ExpiresAt}
		for i, s := range role.CreationStatements {
			steps = append(steps, step{what: fmt.Sprintf("creation_statements[%d]", i), sql: render(s, vals)})
		}
		steps = append(steps, adminPath)
		// A role built by hand may name groups too; a parsed one cannot.
		for _, group := range role.MemberOf {
			steps = append(steps, step{what: "grant " + ident(group), sql: "GRANT " + ident(group) + " TO " + name})
		}
	} else {
		steps = append(steps, step{what: "create role", sql: createRole(name, verifier, req.ExpiresAt, role.MemberOf)})
	}
	comment := roleComment(time.Now())
	steps = append(steps, step{what: "comment on role", sql: "COMMENT ON ROLE " + name + " IS " + quoteLiteral(comment)})
	if sql := markerGrant(p.version, name); sql != "" {
		steps = append(steps, step{what: "grant " + markerRole, sql: sql})
	}
	if len(role.Grants) > 0 {
		grants, err := grantSteps(role.Grants, name)
		if err != nil {
			return nil, err
		}
		steps = append(steps, lock)
		steps = append(steps, grants...)
	}
	return steps, nil
}

// createRole returns the CREATE ROLE statement of a user of the quoted name
// that logs in with the SCRAM verifier until expires and is a member of
// groups: one statement, where GRANT would take one a group.
func createRole(name, verifier string, expires time.Time, groups []string) string {
	sql := "CREATE ROLE " + name + " LOGIN PASSWORD " + quoteLiteral(verifier) + " VALID UNTIL " + timestampLiteral(expires)
	if len(groups) > 0 {
		quoted := make([]string, len(groups))
		for i, g := range groups {
			quoted[i] = ident(g)
		}
		sql += " IN ROLE " + strings.Join(quoted, ", ")
	}
	return sql
}

// grantSteps turns grants into GRANT statements for the quoted user name:
// USAGE on each schema once, then the table privileges.
func grantSteps(grants []Grant, name string) ([]step, error) {
	var steps []step
	var schemas []string
	for i, g := range grants {
		for _, priv := range g.Privileges {
			// ParseRole checked them, but they are written into SQL: check again
			// for a Role built by hand.
			if !slices.Contains(knownPrivileges, priv) {
				return nil, fmt.Errorf("grants[%d]: unknown privilege %q", i, priv)
			}
		}
		if !slices.Contains(schemas, g.Schema) {
			schemas = append(schemas, g.Schema)
			steps = append(steps, step{
				what: "grant usage on schema " + ident(g.Schema),
				sql:  "GRANT USAGE ON SCHEMA " + ident(g.Schema) + " TO " + name,
			})
		}
		privs := strings.Join(g.Privileges, ", ")
		if slices.Equal(g.Tables, []string{"*"}) {
			steps = append(steps, step{
				what: fmt.Sprintf("grant %s on all tables in schema %s", privs, ident(g.Schema)),
				sql:  "GRANT " + privs + " ON ALL TABLES IN SCHEMA " + ident(g.Schema) + " TO " + name,
			})
			continue
		}
		tables := make([]string, len(g.Tables))
		for j, t := range g.Tables {
			tables[j] = pgx.Identifier{g.Schema, t}.Sanitize()
		}
		steps = append(steps, step{
			what: fmt.Sprintf("grant %s on %s", privs, strings.Join(tables, ", ")),
			sql:  "GRANT " + privs + " ON TABLE " + strings.Join(tables, ", ") + " TO " + name,
		})
	}
	return steps, nil
}

// inTx runs steps in one transaction on pool, then each of before, which
// rolls the transaction back by returning an error.
func (p *Plugin) inTx(ctx context.Context, pool *pgxpool.Pool, steps []step, before ...func(pgx.Tx) error) error {
	return classify(pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, s := range steps {
			if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
		}
		for _, f := range before {
			if err := f(tx); err != nil {
				return err
			}
		}
		return nil
	}))
}

// ErrTooStrong matches the error of a Create that rolled back because the
// user it made could do more than an issued user may, and of a CheckRole
// that refuses a role for the same reason.
var ErrTooStrong = errors.New("role too strong")

// checkNewUser fails when the user just made in tx, or a role it is a member
// of, is too strong (see [tooStrong]), when it can act as the marker role or
// as reassignTo (which receives what revoked users owned), or when the
// statements did not make it.
func checkNewUser(ctx context.Context, tx pgx.Tx, username string, version int, reassignTo string) error {
	var login bool
	err := tx.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", username).Scan(&login)
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.New("the statements did not create the role: they must CREATE ROLE {{name}}")
	}
	if err != nil {
		return fmt.Errorf("check the new role: %w", err)
	}
	found, err := tooStrong(ctx, tx, username)
	if err != nil {
		return fmt.Errorf("check the new role: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w for an issued user, rolled back: %s", ErrTooStrong, strings.Join(found, "; "))
	}
	rows, err := tx.Query(ctx, reachQuery(version, "$2"), username, forbiddenRoles(reassignTo))
	if err != nil {
		return fmt.Errorf("check the new role: %w", err)
	}
	reached, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("check the new role: %w", err)
	}
	if len(reached) > 0 {
		return fmt.Errorf("%w for an issued user, rolled back: it can act as %s (SET ROLE or inherited privileges); "+
			"holders must not reach the marker role or a reassign_owned_to role", ErrTooStrong, ident(reached[0]))
	}
	return nil
}

// forbiddenRoles are the roles no issued user may act as: the marker, and
// reassignTo (which receives what revoked users owned) when set.
func forbiddenRoles(reassignTo string) []string {
	if reassignTo == "" {
		return []string{markerRole}
	}
	return []string{markerRole, reassignTo}
}

// reachQuery returns the roles of the text[] parameter roles (such as "$2")
// that role $1 can act as through its memberships, recursively: every
// membership on PostgreSQL 15 and older, and on 16+ those WITH SET or WITH
// INHERIT (the marker's own membership has neither).
func reachQuery(version int, roles string) string {
	edge := ""
	if version >= memberOptionsVersion {
		edge = " AND (m.set_option OR m.inherit_option)"
	}
	return `
WITH RECURSIVE reach(oid) AS (
	SELECT oid FROM pg_roles WHERE rolname = $1
	UNION
	SELECT m.roleid FROM reach JOIN pg_auth_members m ON m.member = reach.oid` + edge + `
)
SELECT r.rolname::text FROM reach JOIN pg_roles r ON r.oid = reach.oid
WHERE r.rolname = ANY (` + roles + `::text[]) ORDER BY 1`
}

// tooStrongSignal starts the text newUserCheckQuery fails to read as an
// integer when the new user is too strong.
const tooStrongSignal = "credbroker: the new role is too strong for an issued user"

// newUserCheckQuery is checkNewUser as one statement that fails instead of
// returning what it found, so it can end the pipeline of a Create and roll
// it back on the server. It applies the rules of strengthQuery and
// reachQuery to the new user $1 ($2: the dangerous predefined roles, $3:
// the roles it must not act as), counting the roles it reaches that break
// one, and when there is any it casts a text that says so to an integer,
// which fails with invalid_text_representation (22P02): PostgreSQL has no
// other way for a plain SQL statement to raise an error, and since the text
// depends on the count, the cast is not folded at plan time. Every role is
// looked up by index, one membership at a time (OFFSET 0 keeps the planner
// from turning the lookups into joins that scan the catalogs), so the check
// costs the same however many roles the server holds: pg_authid grows with
// every live lease. The statements before it are the plugin's own, so the
// user exists and has no attribute but LOGIN; creation statements, which
// may give it more, are checked by checkNewUser instead.
func newUserCheckQuery(version int) string {
	usable := "true" // before PostgreSQL 16 every membership lets the member SET ROLE
	if version >= memberOptionsVersion {
		usable = "(m.set_option OR m.inherit_option)"
	}
	return `
WITH RECURSIVE reach(oid, usable) AS (
	SELECT oid, true FROM pg_roles WHERE rolname = $1
	UNION
	SELECT m.roleid, reach.usable AND ` + usable + `
	FROM reach, LATERAL (SELECT * FROM pg_auth_members WHERE member = reach.oid OFFSET 0) m
)
SELECT CASE WHEN count(*) = 0 THEN 0 ELSE ('` + tooStrongSignal + ` (' || count(*) || ' roles)')::int END
FROM reach, LATERAL (SELECT * FROM pg_roles WHERE oid = reach.oid OFFSET 0) r
WHERE r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolbypassrls OR r.rolreplication
   OR r.rolname = ANY ($2::text[])
   OR (reach.usable AND r.rolname = ANY ($3::text[]))
   OR EXISTS (SELECT 1 FROM pg_auth_members a WHERE a.member = reach.oid AND a.admin_option)`
}

func checkUsername(name string) error {
	switch {
	case name == "":
		return errors.New("no username given")
	case len(name) > 63:
		return fmt.Errorf("username %s is %d bytes: PostgreSQL keeps 63", ident(name), len(name))
	case strings.ContainsRune(name, 0):
		return errors.New("username holds a NUL byte")
	}
	return nil
}

// checkPassword accepts what SCRAM without SASLprep hashes the way the server
// does: printable ASCII.
func checkPassword(pw secret.Value) error {
	if pw.IsZero() {
		return errors.New("no password given")
	}
	for _, c := range []byte(pw.Reveal()) {
		if c < 0x20 || c > 0x7e {
			return errors.New("the password must be printable ASCII")
		}
	}
	return nil
}

// credential is what a workload needs to log in as username.
func (p *Plugin) credential(username string, password secret.Value) plugins.Credential {
	t := p.target
	u := url.URL{Scheme: "postgres", User: url.UserPassword(username, password.Reveal())}
	if t.database != "" {
		u.Path = "/" + t.database
	}
	q := url.Values{"sslmode": {t.sslmode}}
	if strings.HasPrefix(t.host, "/") { // a Unix socket directory
		q.Set("host", t.host)
		q.Set("port", t.port)
	} else {
		u.Host = net.JoinHostPort(t.host, t.port)
	}
	u.RawQuery = q.Encode()
	return plugins.Credential{
		Username: username,
		Password: password,
		URI:      secret.New(u.String()),
		Env: map[string]secret.Value{ // the names in envNames
			"PGHOST":     secret.New(t.host),
			"PGPORT":     secret.New(t.port),
			"PGDATABASE": secret.New(t.database),
			"PGUSER":     secret.New(username),
			"PGPASSWORD": password,
			"PGSSLMODE":  secret.New(t.sslmode),
		},
		Fields: map[string]string{
			"host":     t.host,
			"port":     t.port,
			"database": t.database,
		},
	}
}

// Renew moves the user's VALID UNTIL to req.ExpiresAt. A user that does not
// exist is an error saying so. The lease's state stays as it is.
func (p *Plugin) Renew(ctx context.Context, req plugins.RenewOf[*Role]) (plugins.RenewResponse, error) {
	name := ident(req.Username)
	if req.ExpiresAt.IsZero() {
		return plugins.RenewResponse{}, fmt.Errorf("renew role %s: no expiry given", name)
	}
	_, err := p.pool.Exec(ctx, "ALTER ROLE "+name+" VALID UNTIL "+timestampLiteral(req.ExpiresAt))
	if sqlState(err) == pgerrcode.UndefinedObject {
		return plugins.RenewResponse{}, fmt.Errorf("renew role %s: the role does not exist: %w", name, err)
	}
	if err != nil {
		return plugins.RenewResponse{}, fmt.Errorf("renew role %s: %w", name, classify(err))
	}
	return plugins.RenewResponse{}, nil
}

// ListManaged returns every role this plugin created that still exists: the
// roles whose comment Create wrote, dated by it (PostgreSQL does not record
// when a role was made; CreatedAt is zero where the comment holds no date).
func (p *Plugin) ListManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT r.rolname, d.description FROM pg_shdescription d
		JOIN pg_roles r ON r.oid = d.objoid
		WHERE d.classoid = 'pg_authid'::regclass AND starts_with(d.description, $1)
		ORDER BY r.rolname`, commentPrefix)
	if err != nil {
		return nil, fmt.Errorf("list managed roles: %w", classify(err))
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (plugins.ManagedUser, error) {
		var u plugins.ManagedUser
		var comment string
		err := row.Scan(&u.Username, &comment)
		info, _ := parseRoleComment(comment)
		u.CreatedAt = info.created
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("list managed roles: %w", classify(err))
	}
	return users, nil
}

// Check reports whether the admin connection works and may still create
// roles (CREATEROLE or superuser).
func (p *Plugin) Check(ctx context.Context) error {
	var user string
	var canCreate bool
	err := p.pool.QueryRow(ctx,
		`SELECT current_user, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user`,
	).Scan(&user, &canCreate)
	if err != nil {
		return fmt.Errorf("check: %w", classify(err))
	}
	if !canCreate {
		return fmt.Errorf("check: admin role %s has neither CREATEROLE nor SUPERUSER: it cannot issue users", ident(user))
	}
	return nil
}

// Warnings reports what works but is riskier than it needs to be: an admin
// that is a superuser (it needs only CREATEROLE, and on PostgreSQL 16+ ADMIN
// OPTION on each member_of group role), and a marker role that owns objects.
// A query that fails is reported as a warning too (the decorator of
// [plugins.Open] redacts the admin's secrets from it).
func (p *Plugin) Warnings(ctx context.Context) []string {
	var out []string
	var user string
	var super bool
	err := p.pool.QueryRow(ctx, `SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super)
	switch {
	case err != nil:
		out = append(out, fmt.Sprintf("could not read the admin role's attributes: %v", err))
	case super:
		out = append(out, superuserWarning(user, p.version))
	}
	marker, err := p.markerWarnings(ctx)
	if err != nil {
		out = append(out, fmt.Sprintf("could not read what %s owns: %v", markerRole, err))
	}
	return append(out, marker...)
}

// superuserWarning names the least the admin needs instead of superuser.
func superuserWarning(user string, version int) string {
	need := "CREATEROLE: give credbroker an admin role of its own " +
		"(CREATE ROLE credbroker_admin LOGIN CREATEROLE, with a password of its own) instead of " + ident(user)
	if version >= memberOptionsVersion {
		need += ", and membership WITH ADMIN OPTION of each group role a role's member_of names, " +
			"and of each reassign_owned_to role (GRANT <role> TO " + ident(user) + " WITH ADMIN OPTION)"
	}
	return "admin role " + ident(user) + " is a superuser: a mistake in a role, or a flaw in credbroker, " +
		"acts with every power over the server; it needs only " + need
}

// CheckRole checks role against the server: each member_of group role must exist and be no stronger than an
// issued user may be, and reassign_owned_to must name an existing NOLOGIN
// role that is not too strong either. Too strong means SUPERUSER,
// CREATEROLE, CREATEDB, BYPASSRLS, REPLICATION, ADMIN OPTION on any role, or
// membership of a dangerous predefined role (see dangerousPredefinedRoles),
// on the role itself or any role it is a member of, recursively. Such errors
// match [ErrTooStrong].
func (p *Plugin) CheckRole(ctx context.Context, role *Role) error {
	if role == nil {
		return errors.New("no role spec given")
	}
	var errs []error
	for i, group := range role.MemberOf {
		field := fmt.Sprintf("member_of[%d]", i)
		var exists bool
		if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, group).Scan(&exists); err != nil {
			return fmt.Errorf("%s: %w", field, classify(err))
		}
		if !exists {
			errs = append(errs, fmt.Errorf("%s: role %s does not exist: create it (CREATE ROLE %s NOLOGIN) or fix the name", field, ident(group), ident(group)))
			continue
		}
		found, err := tooStrong(ctx, p.pool, group)
		if err != nil {
			return fmt.Errorf("%s: %w", field, classify(err))
		}
		if len(found) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w: every issued user could use what %s can: %s; "+
				"name a group role that holds only grants on data", field, ErrTooStrong, ident(group), strings.Join(found, "; ")))
		}
	}
	if role.ReassignOwnedTo != "" {
		if err := p.checkReassignTarget(ctx, role.ReassignOwnedTo); err != nil {
			errs = append(errs, fmt.Errorf("reassign_owned_to: %w", err))
		}
	}
	return errors.Join(errs...)
}

// checkReassignTarget fails unless target exists, cannot log in, and is not
// too strong: what revoked users owned goes to it.
func (p *Plugin) checkReassignTarget(ctx context.Context, target string) error {
	var login bool
	err := p.pool.QueryRow(ctx, `SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, target).Scan(&login)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("role %s does not exist: create it (CREATE ROLE %s NOLOGIN) or leave reassign_owned_to out to drop what users own",
			ident(target), ident(target))
	}
	if err != nil {
		return classify(err)
	}
	var problems []string
	if login {
		problems = append(problems, ident(target)+" can log in (ALTER ROLE "+ident(target)+" NOLOGIN)")
	}
	found, err := tooStrong(ctx, p.pool, target)
	if err != nil {
		return classify(err)
	}
	problems = append(problems, found...)
	if len(problems) > 0 {
		return fmt.Errorf("%w to receive what revoked users owned: %s", ErrTooStrong, strings.Join(problems, "; "))
	}
	return nil
}

// Close releases the admin connections and stops hashing passwords ahead.
// Calls after the first do nothing.
func (p *Plugin) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		pools := p.dbPools
		p.dbPools = nil
		p.mu.Unlock()
		for _, pool := range pools {
			pool.Close()
		}
		p.pool.Close()
		if p.passwords != nil {
			p.passwords.stop()
		}
	})
	return nil
}

// poolFor returns a pool connected to database db with the admin's settings,
// made on first use.
func (p *Plugin) poolFor(ctx context.Context, db string) (*pgxpool.Pool, error) {
	if db == p.adminDB {
		return p.pool, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("the plugin is closed")
	}
	if pool, ok := p.dbPools[db]; ok {
		return pool, nil
	}
	cfg := p.base.Copy()
	cfg.ConnConfig.Database = db
	cfg.MaxConns = perDatabaseConns
	cfg.MinConns, cfg.MinIdleConns = 0, 0
	cfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p.dbPools[db] = pool
	return pool, nil
}

// sslMode returns the sslmode the admin DSN asks for, for issued credentials:
// its sslmode (or ssl=true) parameter, else PGSSLMODE, else libpq's default
// "prefer".
func sslMode(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if _, query, ok := strings.Cut(dsn, "?"); ok {
			if q, err := url.ParseQuery(query); err == nil {
				if m := q.Get("sslmode"); m != "" {
					return m
				}
				if q.Get("ssl") == "true" {
					return "require"
				}
			}
		}
	} else if m := keywordValue(dsn, "sslmode"); m != "" {
		return m
	}
	return cmp.Or(os.Getenv("PGSSLMODE"), "prefer")
}

// keywordValue returns the last value of key in a keyword/value connection
// string (key=value pairs, values optionally single-quoted with backslash
// escapes), or "" if key is absent.
func keywordValue(dsn, key string) string {
	var found string
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			return found
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return found
		}
		k := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t\n\r")
		var v strings.Builder
		quoted := strings.HasPrefix(s, "'")
		if quoted {
			s = s[1:]
		}
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				v.WriteByte(s[i])
				continue
			}
			if (quoted && c == '\'') || (!quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
				break
			}
			v.WriteByte(c)
		}
		if i < len(s) {
			i++ // the closing quote or the blank
		}
		s = s[i:]
		if k == key {
			found = v.String()
		}
	}
}
