package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Tuning of the admin connection.
const (
	// dialTimeout bounds connecting to the server when the DSN sets no
	// timeout.
	dialTimeout = 10 * time.Second
	// connMaxIdleTime closes admin connections idle this long.
	connMaxIdleTime = 5 * time.Minute
	// undoTimeout bounds dropping a half-made user, which runs even when the
	// caller's context has ended.
	undoTimeout = 30 * time.Second
	// defaultPort is MySQL's TCP port.
	defaultPort = "3306"
)

// Plugin issues and removes the users of one MySQL or MariaDB server. It is
// safe for concurrent use; make one with [Driver.Open] (the broker opens it
// through [plugins.Open], whose decorator redacts the admin DSN and its
// password, named by Secrets, from every error).
type Plugin struct {
	db      *sql.DB
	mariaDB bool   // the server is MariaDB, not MySQL
	version string // VERSION(), for warnings
	canLock bool   // the server has ALTER USER … ACCOUNT LOCK (MySQL 5.7.6+, MariaDB 10.4+)
	target  target // where issued credentials point
	// adminAddr is the admin DSN's network and address, tls its TLS
	// setting, for Warnings.
	adminNet, adminAddr, adminTLS string
	secrets                       []secret.Value
	// cfg is the admin's driver configuration, for RotateRoot's login
	// with the new password.
	cfg *mysql.Config
}

var (
	_ plugins.TypedPlugin[*Role]        = (*Plugin)(nil)
	_ plugins.TypedStateUpgrader[*Role] = (*Plugin)(nil)
	_ plugins.SecretHolder              = (*Plugin)(nil)
	_ plugins.Warner                    = (*Plugin)(nil)
)

// target is where issued credentials point.
type target struct {
	host, port string
}

// step is one statement; what describes it in errors and never holds a
// secret.
type step struct {
	what string
	sql  string
}

// open connects with c. configure, when not nil, edits the driver
// configuration before the pool is made (tests record the wire with it).
// Its errors have the DSN and its password redacted: no plugin exists yet
// whose Secrets the decorator of [plugins.Open] could use.
func open(ctx context.Context, c *Connection, configure func(*mysql.Config)) (*Plugin, error) {
	dsn, err := c.DSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	secrets := []secret.Value{dsn, secret.New(dsnPassword(dsn.Reveal())), c.adminPassword}
	p, err := connect(ctx, c, dsn, configure)
	if err != nil {
		return nil, plugins.Sanitize(fmt.Errorf("open: %w", err), secrets...)
	}
	return p, nil
}

// connect makes the Plugin: the admin pool, and what the server is.
func connect(ctx context.Context, c *Connection, dsn secret.Value, configure func(*mysql.Config)) (*Plugin, error) {
	cfg, err := mysql.ParseDSN(dsn.Reveal())
	if err != nil {
		return nil, fmt.Errorf("parse the DSN in %s: %w", c.DSN, err)
	}
	p := &Plugin{secrets: []secret.Value{dsn}}
	if cfg.Passwd != "" {
		p.secrets = append(p.secrets, secret.New(cfg.Passwd))
	}
	if !c.adminPassword.IsZero() {
		cfg.Passwd = c.adminPassword.Reveal()
		p.secrets = append(p.secrets, c.adminPassword)
	}
	if p.target, err = credentialTarget(c, cfg); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = dialTimeout
	}
	// The driver's default logger writes plain text to stderr, into the
	// broker's JSON log stream; what it logs is returned as errors anyway.
	cfg.Logger = &mysql.NopLogger{}
	if configure != nil {
		configure(cfg)
	}
	p.cfg = cfg.Clone()
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("the DSN in %s: %w", c.DSN, err)
	}
	p.db = sql.OpenDB(connector)
	p.db.SetMaxOpenConns(c.MaxConns)
	p.db.SetMaxIdleConns(c.MaxConns)
	p.db.SetConnMaxIdleTime(connMaxIdleTime)
	var version string
	if err := p.db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		_ = p.db.Close()
		// Any failure of the first statement is a failure to connect.
		if !errors.Is(err, plugins.ErrUnavailable) && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", plugins.ErrUnavailable, err)
		}
		return nil, err
	}
	p.version = version
	p.mariaDB = strings.Contains(strings.ToLower(version), "mariadb")
	p.canLock = canLock(version)
	p.adminNet, p.adminAddr, p.adminTLS = cfg.Net, cfg.Addr, cfg.TLSConfig
	return p, nil
}

// canLock reports whether a server of version (VERSION()) has ALTER USER …
// ACCOUNT LOCK: MariaDB 10.4 and later, MySQL 5.7.6 and later.
func canLock(version string) bool {
	var major, minor, patch int
	_, _ = fmt.Sscanf(version, "%d.%d.%d", &major, &minor, &patch)
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return major > 10 || major == 10 && minor >= 4
	}
	return major > 5 || major == 5 && (minor > 7 || minor == 7 && patch >= 6)
}

// credentialTarget returns where issued credentials point: the connection's
// host and port, else the admin DSN's TCP address.
func credentialTarget(c *Connection, cfg *mysql.Config) (target, error) {
	t := target{host: c.Host}
	if c.Port != 0 {
		t.port = strconv.Itoa(c.Port)
	}
	if strings.HasPrefix(cfg.Net, "tcp") {
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return target{}, fmt.Errorf("the DSN's address %q: %w", cfg.Addr, err)
		}
		t.host, t.port = cmp.Or(t.host, host), cmp.Or(t.port, port)
	} else if t.host == "" {
		return target{}, fmt.Errorf("the admin DSN connects over %s, which tells nothing about where workloads connect: "+
			"set connection.host (and port, default %s)", cfg.Net, defaultPort)
	}
	t.port = cmp.Or(t.port, defaultPort)
	return t, nil
}

// Secrets returns the admin DSN and its password, which the decorator of
// [plugins.Open] redacts from every error and warning.
func (p *Plugin) Secrets() []secret.Value { return slices.Clone(p.secrets) }

// hashClause returns the clause that sets an account's password to the
// mysql_native_password hash: IDENTIFIED BY PASSWORD on MariaDB, IDENTIFIED
// WITH … AS on MySQL, which dropped the former in 8.0. via keeps MariaDB's
// VIA … USING form where a creation statement used it, so what follows it
// (OR unix_socket …) still parses.
func (p *Plugin) hashClause(hash string) func(via bool) string {
	return func(via bool) string {
		switch {
		case via:
			return "IDENTIFIED VIA mysql_native_password USING " + quoteString(hash)
		case p.mariaDB:
			return "IDENTIFIED BY PASSWORD " + quoteString(hash)
		default:
			return "IDENTIFIED WITH mysql_native_password AS " + quoteString(hash)
		}
	}
}

// Create makes the user: CREATE USER with the mysql_native_password hash of
// the password, so the plaintext never reaches the server or its logs, then
// the role's grants; or the role's creation statements, with {{password}}
// rewritten to the hash. Any failure drops what was made before the error
// is returned: Create leaves a whole user or none. MySQL has no account
// expiry to set: req.ExpiresAt is enforced by the broker's reaper alone.
// The State returned holds the role's revocation statements (see state).
func (p *Plugin) Create(ctx context.Context, req plugins.CreateOf[*Role]) (plugins.CreateResponse, error) {
	hash := NativePasswordHash(req.Password.Reveal())
	role := req.Spec
	err := checkNewUsername(req.Username)
	if err == nil && role == nil {
		err = errors.New("no role spec given")
	}
	if err == nil && req.Password.IsZero() {
		err = errors.New("no password given")
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		if len(role.CreationStatements) > 0 {
			err = p.createWithStatements(ctx, req.Username, hash, role)
		} else {
			err = p.createWithGrants(ctx, req.Username, hash, role)
		}
	}
	if err != nil {
		// The decorator redacts the password and the admin's secrets; the
		// hash, which a server error may quote with the statement, only
		// Create knows.
		return plugins.CreateResponse{}, plugins.Sanitize(fmt.Errorf("create user %s: %w", quoteString(req.Username), classify(err)),
			secret.New(hash))
	}
	return plugins.CreateResponse{Credential: p.credential(req.Username, req.Password, role), State: newState(role)}, nil
}

func (p *Plugin) createWithGrants(ctx context.Context, username, hash string, role *Role) error {
	acct := account(username, role.host())
	var steps []step
	for i, g := range role.Grants {
		for _, priv := range g.Privileges {
			// ParseRole checked them, but they are written into SQL: check again
			// for a Role built by hand.
			if _, ok := privileges[priv]; !ok {
				return fmt.Errorf("grants[%d]: unknown privilege %q", i, priv)
			}
		}
		if g.db == "" {
			return fmt.Errorf("grants[%d]: not parsed by ParseRole", i)
		}
		steps = append(steps, step{
			what: fmt.Sprintf("grants[%d]", i),
			sql:  "GRANT " + strings.Join(g.Privileges, ", ") + " ON " + g.renderOn() + " TO " + acct,
		})
	}

	if _, err := p.db.ExecContext(ctx, "CREATE USER "+acct+" "+p.hashClause(hash)(false)); err != nil {
		err = fmt.Errorf("create the account: %w", err)
		if refused(err) {
			return err // the server made nothing (an account of that name may exist: leave it)
		}
		return p.undo(ctx, username, err)
	}
	if err := p.exec(ctx, steps); err != nil {
		return p.undo(ctx, username, err)
	}
	return nil
}

func (p *Plugin) createWithStatements(ctx context.Context, username, hash string, role *Role) error {
	// The statements may fail at any point, after which every account of
	// this name is dropped: make sure none existed before.
	hosts, err := p.hosts(ctx, username)
	if err != nil {
		return err
	}
	if len(hosts) > 0 {
		return fmt.Errorf("user %s already exists", quoteString(username))
	}
	steps, err := renderAll("creation_statements", role.CreationStatements, username, p.hashClause(hash))
	if err != nil {
		return err
	}
	if err := p.exec(ctx, steps); err != nil {
		return p.undo(ctx, username, err)
	}
	if hosts, err = p.hosts(ctx, username); err != nil {
		return p.undo(ctx, username, err)
	}
	if len(hosts) == 0 {
		return fmt.Errorf("creation_statements ran but made no user named %s: they must create '{{name}}'", quoteString(username))
	}
	return nil
}

// exec runs steps in order on the admin pool.
func (p *Plugin) exec(ctx context.Context, steps []step) error {
	for _, s := range steps {
		if _, err := p.db.ExecContext(ctx, s.sql); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// undo drops every account named username after a failed Create, also when
// ctx has ended, and returns err with anything that went wrong in the drop.
// The broker also revokes every user whose Create failed, so a drop that
// fails here is retried.
func (p *Plugin) undo(ctx context.Context, username string, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	hosts, lookupErr := p.hosts(ctx, username)
	if lookupErr == nil {
		lookupErr = p.drop(ctx, username, hosts)
	}
	if lookupErr != nil {
		return errors.Join(err, fmt.Errorf("drop the half-made user (Revoke will retry): %w", lookupErr))
	}
	return err
}

// credential is what a workload needs to log in as username.
func (p *Plugin) credential(username string, password secret.Value, role *Role) plugins.Credential {
	t, db := p.target, role.database()
	u := url.URL{
		Scheme: "mysql",
		User:   url.UserPassword(username, password.Reveal()),
		Host:   net.JoinHostPort(t.host, t.port),
		Path:   "/" + db,
	}
	return plugins.Credential{
		Username: username,
		Password: password,
		URI:      secret.New(u.String()),
		Env: map[string]secret.Value{
			"MYSQL_HOST":     secret.New(t.host),
			"MYSQL_TCP_PORT": secret.New(t.port),
			"MYSQL_USER":     secret.New(username),
			"MYSQL_PWD":      password,
			"MYSQL_DATABASE": secret.New(db),
		},
		Fields: map[string]string{
			"host":     t.host,
			"port":     t.port,
			"username": username,
			"database": db,
		},
	}
}

// Renew checks that the user still exists. MySQL and MariaDB have no account
// expiry finer than days (PASSWORD EXPIRE INTERVAL), so there is nothing to
// move: the broker's reaper alone ends the user at req.ExpiresAt. The
// lease's State stays as it is.
func (p *Plugin) Renew(ctx context.Context, req plugins.RenewOf[*Role]) (plugins.RenewResponse, error) {
	if err := checkUsername(req.Username); err != nil {
		return plugins.RenewResponse{}, fmt.Errorf("renew user: %w", err)
	}
	hosts, err := p.hosts(ctx, req.Username)
	if err != nil {
		return plugins.RenewResponse{}, fmt.Errorf("renew user %s: %w", quoteString(req.Username), classify(err))
	}
	if len(hosts) == 0 {
		return plugins.RenewResponse{}, fmt.Errorf("renew user %s: the user does not exist", quoteString(req.Username))
	}
	return plugins.RenewResponse{}, nil
}

// hosts returns the host parts of every account named username. The name,
// one checkUsername accepts (letters, digits and _), is written into the
// query as a literal: bound, it would cost a PREPARE round trip of its own
// on every Revoke.
func (p *Plugin) hosts(ctx context.Context, username string) ([]string, error) {
	if err := checkUsername(username); err != nil {
		return nil, err
	}
	rows, err := p.db.QueryContext(ctx, "SELECT Host FROM mysql.user WHERE User = "+quoteString(username)+" ORDER BY Host")
	if err != nil {
		return nil, fmt.Errorf("look up the user's accounts: %w", err)
	}
	defer rows.Close()
	var hosts []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("look up the user's accounts: %w", err)
		}
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up the user's accounts: %w", err)
	}
	return hosts, nil
}

// ListManaged returns every user whose name starts with
// [plugins.ManagedPrefix], the marker of users the broker made, once however
// many hosts it has accounts for. MySQL does not date its accounts in
// mysql.user on every version, so CreatedAt is zero.
func (p *Plugin) ListManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	users, err := p.listManaged(ctx)
	if err != nil {
		return nil, fmt.Errorf("list managed users: %w", classify(err))
	}
	return users, nil
}

func (p *Plugin) listManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	rows, err := p.db.QueryContext(ctx,
		"SELECT User, Host FROM mysql.user WHERE User LIKE ? ESCAPE '"+likeEscape+"' ORDER BY User, Host",
		likePrefix(plugins.ManagedPrefix))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var users []plugins.ManagedUser
	for rows.Next() {
		var user, host string
		if err := rows.Scan(&user, &host); err != nil {
			return nil, err
		}
		if len(users) == 0 || users[len(users)-1].Username != user {
			users = append(users, plugins.ManagedUser{Username: user})
		}
	}
	return users, rows.Err()
}

// adminPrivilege is a global privilege Check requires, with the names that
// satisfy it (MariaDB, MySQL 8 and the SUPER both accept).
type adminPrivilege struct {
	why    string
	anyOf  []string
	needed string
}

// adminPrivileges are the global privileges Check requires on every server.
var adminPrivileges = []adminPrivilege{
	{"create, lock and drop users", []string{"CREATE USER"}, "CREATE USER"},
	{"see the sessions of issued users", []string{"PROCESS"}, "PROCESS"},
	{"end the sessions of issued users", []string{"CONNECTION ADMIN", "CONNECTION_ADMIN", "SUPER"}, "CONNECTION ADMIN (MariaDB), CONNECTION_ADMIN (MySQL) or SUPER"},
}

// mysql8AdminPrivileges are what Check requires on MySQL 8 besides: MySQL
// 8.0.22+ refuses DROP USER of an account that is still the DEFINER of an
// object (one made after Revoke dropped the others) unless the admin holds
// one of these.
var mysql8AdminPrivileges = []adminPrivilege{
	{"drop users that are still the definer of an object (MySQL 8.0.22+ refuses DROP USER otherwise)",
		[]string{"SET_ANY_DEFINER", "SET_USER_ID", "ALLOW_NONEXISTENT_DEFINER"},
		"SET_ANY_DEFINER (MySQL 8.2+) or SET_USER_ID (MySQL 8.0, 8.1)"},
}

// missingAdminPrivileges returns what the admin lacks of the privileges
// Check requires, given the global privileges it holds (upper case) and the
// server's VERSION().
func missingAdminPrivileges(held map[string]bool, version string) []string {
	need := adminPrivileges
	var major int
	_, _ = fmt.Sscanf(version, "%d.", &major)
	if !strings.Contains(strings.ToLower(version), "mariadb") && major >= 8 {
		need = append(slices.Clone(need), mysql8AdminPrivileges...)
	}
	var missing []string
	for _, n := range need {
		if !slices.ContainsFunc(n.anyOf, func(p string) bool { return held[p] }) {
			missing = append(missing, n.needed+" (to "+n.why+")")
		}
	}
	return missing
}

// Check reports whether the admin connection works and holds, granted
// directly (not through a role) and globally, what issuing and revoking
// need: CREATE USER, PROCESS (to see the sessions Revoke ends) and
// CONNECTION ADMIN or SUPER (to end them), on MySQL 8 SET_ANY_DEFINER or
// SET_USER_ID (to drop a user that is still a DEFINER), and read access to
// mysql.user.
func (p *Plugin) Check(ctx context.Context) error {
	if err := p.check(ctx); err != nil {
		return fmt.Errorf("check: %w", classify(err))
	}
	return nil
}

// admin returns the admin's account as CURRENT_USER() names it and as
// information_schema's GRANTEE columns do ('user'@'host').
func (p *Plugin) admin(ctx context.Context) (current, grantee string, err error) {
	if err := p.db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&current); err != nil {
		return "", "", err
	}
	at := strings.LastIndexByte(current, '@')
	if at < 0 {
		return "", "", fmt.Errorf("CURRENT_USER() is %q, not user@host", current)
	}
	return current, "'" + current[:at] + "'@'" + current[at+1:] + "'", nil
}

// globalPrivileges returns the admin's global privileges, upper case.
func (p *Plugin) globalPrivileges(ctx context.Context, grantee string) (map[string]bool, error) {
	rows, err := p.db.QueryContext(ctx,
		"SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?", grantee)
	if err != nil {
		return nil, fmt.Errorf("read the admin's privileges: %w", err)
	}
	defer rows.Close()
	held := map[string]bool{}
	for rows.Next() {
		var priv string
		if err := rows.Scan(&priv); err != nil {
			return nil, fmt.Errorf("read the admin's privileges: %w", err)
		}
		held[strings.ToUpper(priv)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the admin's privileges: %w", err)
	}
	return held, nil
}

func (p *Plugin) check(ctx context.Context) error {
	var one int
	if err := p.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	current, grantee, err := p.admin(ctx)
	if err != nil {
		return err
	}
	held, err := p.globalPrivileges(ctx, grantee)
	if err != nil {
		return err
	}
	if missing := missingAdminPrivileges(held, p.version); len(missing) > 0 {
		return fmt.Errorf("admin %s lacks global %s: it cannot issue and revoke users", current, strings.Join(missing, ", "))
	}
	if _, err := p.listManaged(ctx); err != nil {
		return fmt.Errorf("admin %s cannot read mysql.user: %w", current, err)
	}
	return nil
}

// definerPrivileges maps a privilege that lets a holder make objects with
// itself as DEFINER to what the admin needs to drop them in Revoke.
var definerPrivileges = map[string][]string{
	"CREATE ROUTINE": {"ALTER ROUTINE"},
	"CREATE VIEW":    {"DROP"},
	"TRIGGER":        {"TRIGGER"},
	"EVENT":          {"EVENT"},
	"ALL":            {"ALTER ROUTINE", "DROP", "TRIGGER", "EVENT"},
}

// adminHolds reports whether grantee holds priv on database db, globally
// or on the database (a database grant's name is a LIKE pattern, escaped
// with a backslash: named as CHAR(92), which means the same whatever the
// sql_mode).
func (p *Plugin) adminHolds(ctx context.Context, grantee, priv, db string) (bool, error) {
	var n int
	err := p.db.QueryRowContext(ctx, `
		SELECT (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ? AND PRIVILEGE_TYPE = ?)
		     + (SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND PRIVILEGE_TYPE = ? AND ? LIKE TABLE_SCHEMA ESCAPE CHAR(92))`,
		grantee, priv, grantee, priv, db).Scan(&n)
	return n > 0, err
}

// CheckRole checks role against the server: the databases and tables its
// grants name exist, and no anonymous account (”@'localhost' and the like)
// shadows its '%' accounts for the loopback address issued credentials point
// at. The server would match such a login to the anonymous account, which is
// more specific, and refuse the issued password. The broker calls CheckRole
// for every role at start.
func (p *Plugin) CheckRole(ctx context.Context, role *Role) error {
	if role == nil {
		return errors.New("no role spec given")
	}
	return classify(p.checkRole(ctx, role))
}

func (p *Plugin) checkRole(ctx context.Context, role *Role) error {
	var errs []error
	errs = append(errs, p.checkDefinerCleanup(ctx, role))
	for i, g := range role.Grants {
		var n int
		var err error
		switch {
		case g.db == "*":
			continue
		case g.table == "*":
			err = p.db.QueryRowContext(ctx,
				"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", g.db).Scan(&n)
		default:
			err = p.db.QueryRowContext(ctx,
				"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", g.db, g.table).Scan(&n)
		}
		switch {
		case err != nil:
			return fmt.Errorf("grants[%d]: look up %s: %w", i, g.On, err)
		case n == 0 && g.table == "*":
			errs = append(errs, fmt.Errorf("grants[%d].on: database %s does not exist", i, quoteIdent(g.db)))
		case n == 0:
			errs = append(errs, fmt.Errorf("grants[%d].on: table %s.%s does not exist", i, quoteIdent(g.db), quoteIdent(g.table)))
		}
	}
	if len(role.Grants) > 0 && role.host() == "%" && plugins.IsLoopback(p.target.host) {
		anonymous, err := p.anonymousLocalAccounts(ctx)
		if err != nil {
			return err
		}
		if len(anonymous) > 0 {
			errs = append(errs, fmt.Errorf("anonymous account %s shadows the issued '%%' accounts for logins from the server's "+
				"own host, where issued credentials point (%s): such logins would fail with \"access denied\". Drop it "+
				"(DROP USER %s, as mysql_secure_installation does), or set host: in the role to the workloads' address",
				strings.Join(anonymous, ", "), p.target.host, strings.Join(anonymous, ", ")))
		}
	}
	return errors.Join(errs...)
}

// checkDefinerCleanup checks that the admin can drop the objects holders of
// role can make with themselves as DEFINER (see definer.go): for each grant
// of CREATE ROUTINE, CREATE VIEW, TRIGGER, EVENT or ALL, in grants or in the
// GRANT statements of creation_statements, the privilege that drops such
// objects on that database.
func (p *Plugin) checkDefinerCleanup(ctx context.Context, role *Role) error {
	var grantee string
	var errs []error
	for i, g := range slices.Concat(role.Grants, role.statementGrants) {
		if g.db == "*" || g.db == "" {
			continue
		}
		what := g.source
		if what == "" {
			what = fmt.Sprintf("grants[%d]", i)
		}
		for _, priv := range g.Privileges {
			for _, need := range definerPrivileges[priv] {
				if grantee == "" {
					var err error
					if _, grantee, err = p.admin(ctx); err != nil {
						return err
					}
				}
				ok, err := p.adminHolds(ctx, grantee, need, g.db)
				if err != nil {
					return fmt.Errorf("%s: read the admin's privileges on %s: %w", what, quoteIdent(g.db), err)
				}
				if !ok {
					errs = append(errs, fmt.Errorf("%s: %s lets holders make objects that run as them, which Revoke drops, "+
						"but the admin lacks %s on %s (grant it: GRANT %s ON %s.* TO the admin)", what, priv, need, quoteIdent(g.db), need, quoteIdent(escapeWildcards(g.db))))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// anonymousLocalAccounts returns the anonymous accounts that match a login
// from the server's own host, rendered ”@'host'.
func (p *Plugin) anonymousLocalAccounts(ctx context.Context) ([]string, error) {
	rows, err := p.db.QueryContext(ctx, `
		SELECT Host FROM mysql.user
		WHERE User = '' AND Host <> '%'
		  AND ('localhost' LIKE Host OR '127.0.0.1' LIKE Host OR '::1' LIKE Host OR @@hostname LIKE Host)
		ORDER BY Host`)
	if err != nil {
		return nil, fmt.Errorf("look for anonymous accounts: %w", err)
	}
	defer rows.Close()
	var accounts []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("look for anonymous accounts: %w", err)
		}
		accounts = append(accounts, "''@"+quoteString(h))
	}
	return accounts, rows.Err()
}

// Close releases the admin connections.
func (p *Plugin) Close() error {
	return p.db.Close()
}
