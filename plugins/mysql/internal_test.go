package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

func TestNativePasswordHash(t *testing.T) {
	t.Parallel()
	// PASSWORD('password') on MySQL 5.7 and MariaDB.
	if got, want := NativePasswordHash("password"), "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"; got != want {
		t.Errorf("NativePasswordHash(password) = %s, want %s", got, want)
	}
}

// TestNativePasswordHashMatchesServer has the server hash passwords with
// PASSWORD() (the test may send the plaintext; the plugin never does) and
// compares.
func TestNativePasswordHashMatchesServer(t *testing.T) {
	t.Parallel()
	db := openDB(t, plugintest.MySQLDSN(t))
	var server string
	if err := db.QueryRowContext(t.Context(), "SELECT VERSION()").Scan(&server); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(server), "mariadb") {
		t.Skipf("PASSWORD() is gone from MySQL %s", server)
	}
	for _, pw := range []string{plugins.NewPassword().Reveal(), "correct horse battery staple", `!"#%&'()*+,-./:;<=>?@[\]^_{|}~`, "päss"} {
		var got string
		if err := db.QueryRowContext(t.Context(), "SELECT PASSWORD(?)", pw).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := NativePasswordHash(pw); got != want {
			t.Errorf("password %q: server %s, Go %s", pw, got, want)
		}
	}
}

func TestParseOnRenderOn(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ on, db, table, rendered string }{
		"Everything":   {"*.*", "*", "*", "*.*"},
		"Database":     {"orders.*", "orders", "*", "`orders`.*"},
		"Wildcards":    {"order_s%.*", "order_s%", "*", "`order\\_s\\%`.*"},
		"Backslash":    {"`a\\b`.*", `a\b`, "*", "`a\\\\b`.*"},
		"Table":        {"orders.line_items", "orders", "line_items", "`orders`.`line_items`"},
		"Backticked":   {"`my.db`.`a``b`", "my.db", "a`b", "`my.db`.`a``b`"},
		"Spaces":       {"  db.t ", "db", "t", "`db`.`t`"},
		"Unicode":      {"bücher.*", "bücher", "*", "`bücher`.*"},
		"QuoteInName":  {"o'x.t", "o'x", "t", "`o'x`.`t`"},
		"SemicolonIns": {"`a;DROP`.*", "a;DROP", "*", "`a;DROP`.*"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			db, table, err := parseOn(tt.on)
			if err != nil {
				t.Fatalf("parseOn(%q): %v", tt.on, err)
			}
			if db != tt.db || table != tt.table {
				t.Errorf("parseOn(%q) = %q, %q; want %q, %q", tt.on, db, table, tt.db, tt.table)
			}
			g := Grant{db: db, table: table}
			if got := g.renderOn(); got != tt.rendered {
				t.Errorf("renderOn(%q) = %s, want %s", tt.on, got, tt.rendered)
			}
		})
	}
	// A name that is just *, quoted, would become the wildcard.
	for _, on := range []string{"`*`.*", "db.`*`", "*.`*`", "`db`", "db.*.*", "*", ".t"} {
		if db, table, err := parseOn(on); err == nil {
			t.Errorf("parseOn(%q) = %q, %q; want an error", on, db, table)
		}
	}
}

func TestSplitStatements(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in   string
		want []string
	}{
		"One":          {"GRANT SELECT ON a.* TO 'x'", []string{"GRANT SELECT ON a.* TO 'x'"}},
		"Two":          {"CREATE USER 'x'; GRANT SELECT ON a.* TO 'x';", []string{"CREATE USER 'x'", "GRANT SELECT ON a.* TO 'x'"}},
		"QuotedSemi":   {"INSERT INTO t VALUES ('a;b'); SELECT \"c;d\", `e;f`", []string{"INSERT INTO t VALUES ('a;b')", "SELECT \"c;d\", `e;f`"}},
		"EscapedQuote": {`INSERT INTO t VALUES ('it\'s;'); SELECT 1`, []string{`INSERT INTO t VALUES ('it\'s;')`, "SELECT 1"}},
		"DoubledQuote": {`INSERT INTO t VALUES ('it''s;'); SELECT 1`, []string{`INSERT INTO t VALUES ('it''s;')`, "SELECT 1"}},
		"Empty":        {" ; ;", nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := splitStatements(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("splitStatements(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if _, err := splitStatements("SELECT 'a"); err == nil {
		t.Error("an unclosed quote was accepted")
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	hash := func(via bool) string {
		if via {
			return "VIA-HASH"
		}
		return "HASH"
	}
	tests := map[string]struct{ in, want string }{
		"Vault": {
			"CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'",
			"CREATE USER 'cb_x_1'@'%' HASH",
		},
		"Bare":          {"CREATE USER {{name}} IDENTIFIED BY {{password}}", "CREATE USER 'cb_x_1' HASH"},
		"DoubleQuoted":  {`CREATE USER "{{username}}"@"%" identified  by "{{password}}"`, `CREATE USER 'cb_x_1'@"%" HASH`},
		"Backticks":     {"GRANT SELECT ON db.* TO `{{name}}`@`%`", "GRANT SELECT ON db.* TO `cb_x_1`@`%`"},
		"WithPlugin":    {"CREATE USER {{name}} IDENTIFIED WITH mysql_native_password BY '{{password}}'", "CREATE USER 'cb_x_1' HASH"},
		"Via":           {"CREATE USER {{name}} IDENTIFIED VIA mysql_native_password USING PASSWORD('{{password}}') OR unix_socket", "CREATE USER 'cb_x_1' VIA-HASH OR unix_socket"},
		"NameAsString":  {"INSERT INTO audit VALUES ('{{name}}', NOW())", "INSERT INTO audit VALUES ('cb_x_1', NOW())"},
		"TwoPasswords":  {"CREATE USER {{name}}@'a' IDENTIFIED BY '{{password}}', {{name}}@'b' IDENTIFIED BY '{{password}}'", "CREATE USER 'cb_x_1'@'a' HASH, 'cb_x_1'@'b' HASH"},
		"NoPlaceholder": {"FLUSH PRIVILEGES", "FLUSH PRIVILEGES"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := render(tt.in, "cb_x_1", hash)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("render(%q)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestLikePrefix(t *testing.T) {
	t.Parallel()
	if got := likePrefix("cb_"); got != "cb!_%" {
		t.Errorf("likePrefix(cb_) = %q", got)
	}
	if got := likePrefix("a!%"); got != "a!!!%%" {
		t.Errorf("likePrefix(a!%%) = %q", got)
	}
}

func TestCheckUsername(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		username     string
		ok, okForNew bool
	}{
		"Generated":   {plugins.NewUsername("orders-readonly", usernameLimit), true, true},
		"Limit":       {"cb_" + strings.Repeat("a", 29), true, true},
		"TooLong":     {"cb_" + strings.Repeat("a", 30), true, false},
		"Empty":       {"", false, false},
		"NoPrefix":    {"root", false, false},
		"Quote":       {"cb_x'y", false, false},
		"Backslash":   {`cb_x\`, false, false},
		"Wildcard":    {"cb_%", false, false},
		"NonASCII":    {"cb_ä", false, false},
		"UpperLetter": {"cb_X", true, true},
	} {
		t.Run(name, func(t *testing.T) {
			if err := checkUsername(tt.username); (err == nil) != tt.ok {
				t.Errorf("checkUsername(%q) = %v, want ok=%v", tt.username, err, tt.ok)
			}
			if err := checkNewUsername(tt.username); (err == nil) != tt.okForNew {
				t.Errorf("checkNewUsername(%q) = %v, want ok=%v", tt.username, err, tt.okForNew)
			}
		})
	}
}

func TestDSNPassword(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]string{
		"root:pw@tcp(127.0.0.1:3306)/":          "pw",
		"root:p:w@x@tcp(h)/db?a=b/c":            "p:w@x",
		"root@tcp(h)/":                          "",
		"root:pw@tcp(h:3306":                    "pw",
		"u:pw@unix(/run/mysqld/mysqld.sock)/db": "pw",
		"/":                                     "",
	} {
		if got := dsnPassword(dsn); got != want {
			t.Errorf("dsnPassword(%q) = %q, want %q", dsn, got, want)
		}
		if cfg, err := mysql.ParseDSN(dsn); err == nil && cfg.Passwd != want {
			t.Errorf("ParseDSN(%q) finds password %q, dsnPassword %q", dsn, cfg.Passwd, want)
		}
	}
}

// wireRecorder keeps every byte the plugin sends to the server.
type wireRecorder struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *wireRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, r: r}, nil
}

func (r *wireRecorder) sent() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.out.Bytes())
}

type recordingConn struct {
	net.Conn
	r *wireRecorder
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.r.mu.Lock()
	c.r.out.Write(b)
	c.r.mu.Unlock()
	return c.Conn.Write(b)
}

// TestPlaintextNeverReachesServer records every byte the plugin writes to
// the server while it creates users, with grants and with Vault-style
// statements, and looks for the password in it. The hash the server stored
// must be the one the plugin sent, and the password must log in.
func TestPlaintextNeverReachesServer(t *testing.T) {
	t.Parallel()
	adminDSN := plugintest.MySQLDSN(t)
	database := plugintest.NewMySQLDatabase(t, adminDSN)
	admin := openDB(t, adminDSN)
	rec := &wireRecorder{}
	p := openDialing(t, adminDSN, 2, rec.dial)

	roles := map[string]*Role{
		"Grants": {Grants: []Grant{{Privileges: []string{"SELECT"}, On: database + ".*"}}},
		"CreationStatements": {CreationStatements: []string{
			"CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON `" + database + "`.* TO '{{name}}'@'%'",
		}},
	}
	for name, role := range roles {
		t.Run(name, func(t *testing.T) {
			if _, err := role.validate(); err != nil {
				t.Fatal(err)
			}
			pw := plugins.NewPassword()
			username := plugins.NewUsername("wire", usernameLimit)
			var state []byte
			t.Cleanup(func() {
				_, _ = p.Revoke(context.Background(), plugins.RevokeOf[*Role]{Username: username, State: state})
			})
			resp, err := p.Create(t.Context(), plugins.CreateOf[*Role]{
				Username: username, Password: pw, ExpiresAt: time.Now().Add(time.Hour), Spec: role,
			})
			if err != nil {
				t.Fatal(err)
			}
			state, cred := resp.State, resp.Credential
			sent := rec.sent()
			if bytes.Contains(sent, []byte(pw.Reveal())) {
				t.Fatal("the plaintext password was sent to the server")
			}
			var stored string
			if err := admin.QueryRowContext(t.Context(),
				"SELECT authentication_string FROM mysql.user WHERE User = ?", username).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored != NativePasswordHash(pw.Reveal()) {
				t.Errorf("mysql.user holds %q, want the hash of the password", stored)
			}
			if !bytes.Contains(sent, []byte(stored)) {
				t.Error("the server stored a hash the plugin did not send")
			}
			cfg := mysql.NewConfig()
			cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = cred.Username, pw.Reveal(), "tcp", net.JoinHostPort(cred.Fields["host"], cred.Fields["port"])
			session := openDB(t, cfg.FormatDSN())
			if err := session.PingContext(t.Context()); err != nil {
				t.Fatalf("login: %v", plugins.Sanitize(err, pw))
			}
		})
	}
}

// commandRecorder keeps the commands the plugin sends to the server, each a
// round trip (but COM_STMT_CLOSE and COM_QUIT, which have no answer), parsed
// from the packets its connections write.
type commandRecorder struct {
	mu       sync.Mutex
	commands []string
}

func (r *commandRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &commandConn{Conn: c, r: r}, nil
}

// take returns the commands sent since the last take.
func (r *commandRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.commands
	r.commands = nil
	return out
}

// commandConn parses what it writes as MySQL packets: a 3-byte length, a
// sequence number, the payload. A command is a packet of sequence 0 (the
// handshake's and authentication's answers have higher numbers); a query
// is named by the start of its text, marked +objects when it looks for
// definer objects, anything else by its command byte.
type commandConn struct {
	net.Conn
	r   *commandRecorder
	buf []byte
}

func (c *commandConn) Write(b []byte) (int, error) {
	c.buf = append(c.buf, b...)
	for len(c.buf) >= 4 {
		n := int(c.buf[0]) | int(c.buf[1])<<8 | int(c.buf[2])<<16
		if len(c.buf) < 4+n {
			break
		}
		if seq, payload := c.buf[3], c.buf[4:4+n]; seq == 0 && len(payload) > 0 {
			name := fmt.Sprintf("command 0x%02x", payload[0])
			switch text := string(payload[1:]); payload[0] {
			case 0x03: // COM_QUERY
				name = text[:min(len(text), 28)] // short of any password hash
				if strings.Contains(text, "information_schema.VIEWS") {
					name += " +objects"
				}
			case 0x16: // COM_STMT_PREPARE
				name = "PREPARE " + text[:min(len(text), 28)]
			}
			c.r.mu.Lock()
			c.r.commands = append(c.r.commands, name)
			c.r.mu.Unlock()
		}
		c.buf = c.buf[4+n:]
	}
	return c.Conn.Write(b)
}

// TestRoundTrips counts the commands Create and Revoke send, each a round
// trip to the server, so one that is added shows here: Create sends what a
// DBA would type (CREATE USER, one GRANT per grant); Revoke looks the
// accounts up, locks them, finds the sessions and the objects the user is
// the definer of in one query, drops the user, and looks for sessions once
// more. No query is prepared (a PREPARE is a round trip of its own).
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	adminDSN := plugintest.MySQLDSN(t)
	database := plugintest.NewMySQLDatabase(t, adminDSN)
	rec := &commandRecorder{}
	p := openDialing(t, adminDSN, 1, rec.dial)
	role := &Role{Grants: []Grant{{Privileges: []string{"SELECT"}, On: database + ".*"}}}
	if _, err := role.validate(); err != nil {
		t.Fatal(err)
	}
	const (
		hosts     = "SELECT Host FROM mysql.user "
		lock      = "ALTER USER IF EXISTS `cb_rt_"
		leftovers = "SELECT 'SESSION', '', '', '' +objects"
		sessions  = "SELECT 'SESSION', '', '', ''"
		objects   = "SELECT 'EVENT', EVENT_SCHEMA +objects"
		drop      = "DROP USER IF EXISTS `cb_rt_"
		kill      = "KILL CONNECTION "
	)
	create := func(t *testing.T) plugins.Credential {
		t.Helper()
		rec.take()
		resp, err := p.Create(t.Context(), plugins.CreateOf[*Role]{
			Username: plugins.NewUsername("rt", usernameLimit), Password: plugins.NewPassword(),
			ExpiresAt: time.Now().Add(time.Hour), Spec: role,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = p.Revoke(context.Background(), plugins.RevokeOf[*Role]{Username: resp.Credential.Username, State: resp.State})
		})
		expect(t, "Create", rec.take(), "CREATE USER `cb_rt_", "GRANT SELECT ON `cbtest")
		return resp.Credential
	}
	revoke := func(t *testing.T, username string, want ...string) {
		t.Helper()
		rec.take()
		if _, err := p.Revoke(t.Context(), plugins.RevokeOf[*Role]{Username: username, State: EncodeState(role)}); err != nil {
			t.Fatal(err)
		}
		expect(t, "Revoke", rec.take(), want...)
	}

	t.Run("Idle", func(t *testing.T) {
		cred := create(t)
		revoke(t, cred.Username, hosts, lock, leftovers, drop, sessions)
		revoke(t, cred.Username, hosts, leftovers) // gone already
	})
	t.Run("Session", func(t *testing.T) {
		cred := create(t)
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = cred.Username, cred.Password.Reveal(), "tcp",
			net.JoinHostPort(cred.Fields["host"], cred.Fields["port"])
		session := openDB(t, cfg.FormatDSN())
		if err := session.PingContext(t.Context()); err != nil {
			t.Fatalf("login: %v", plugins.Sanitize(err, cred.Password))
		}
		// The session is killed, and the objects looked up again after it.
		revoke(t, cred.Username, hosts, lock, leftovers, kill, objects, drop, sessions)
	})
}

// expect fails unless each of got starts with the want at its index, and
// is marked +objects when that is.
func expect(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = strings.HasPrefix(got[i], want[i]) &&
			strings.HasSuffix(got[i], " +objects") == strings.HasSuffix(want[i], " +objects")
	}
	if !ok {
		t.Errorf("%s sent %d commands:\n\t%s\nwant %d:\n\t%s", what, len(got), strings.Join(got, "\n\t"), len(want), strings.Join(want, "\n\t"))
	}
}

// openDB opens a pool closed when the test ends.
func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestRevokeSQL pins the SQL Revoke builds for locking and for dropping
// definer objects; it is the same on MySQL and MariaDB, and MySQL does not
// run here, so this is what checks the MySQL side.
func TestRevokeSQL(t *testing.T) {
	t.Parallel()
	if got, want := lockSQL([]string{account("cb_x_1", "%"), account("cb_x_1", "local`host")}),
		"ALTER USER IF EXISTS `cb_x_1`@`%`, `cb_x_1`@`local``host` ACCOUNT LOCK"; got != want {
		t.Errorf("lockSQL = %s, want %s", got, want)
	}
	for _, tt := range []struct {
		o    definerObject
		want string
	}{
		{definerObject{"EVENT", "app", "tick"}, "DROP EVENT IF EXISTS `app`.`tick`"},
		{definerObject{"PROCEDURE", "app", "p`q"}, "DROP PROCEDURE IF EXISTS `app`.`p``q`"},
		{definerObject{"FUNCTION", "my.db", "f"}, "DROP FUNCTION IF EXISTS `my.db`.`f`"},
		{definerObject{"PACKAGE BODY", "app", "pkg"}, "DROP PACKAGE BODY IF EXISTS `app`.`pkg`"},
		{definerObject{"TRIGGER", "app", "spy"}, "DROP TRIGGER IF EXISTS `app`.`spy`"},
		{definerObject{"VIEW", "app", "peek"}, "DROP VIEW IF EXISTS `app`.`peek`"},
	} {
		if got, err := dropDefinerSQL(tt.o); err != nil || got != tt.want {
			t.Errorf("dropDefinerSQL(%v) = %q, %v; want %q", tt.o, got, err, tt.want)
		}
	}
	if _, err := dropDefinerSQL(definerObject{"TABLE; DROP", "a", "b"}); err == nil {
		t.Error("dropDefinerSQL accepted an unknown kind")
	}
}

func TestCanLock(t *testing.T) {
	t.Parallel()
	for version, want := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1": true, "10.4.0-MariaDB": true, "10.3.39-MariaDB": false, "11.4.2-MariaDB": true,
		"8.0.36": true, "8.4.0": true, "5.7.6-log": true, "5.7.5": false, "5.6.51": false,
	} {
		if got := canLock(version); got != want {
			t.Errorf("canLock(%q) = %v, want %v", version, got, want)
		}
	}
}

// TestMissingAdminPrivileges: MySQL 8 also needs SET_ANY_DEFINER or
// SET_USER_ID; MariaDB and MySQL 5.7 do not.
func TestMissingAdminPrivileges(t *testing.T) {
	t.Parallel()
	base := map[string]bool{"CREATE USER": true, "PROCESS": true, "CONNECTION_ADMIN": true}
	with := func(extra string) map[string]bool {
		m := maps.Clone(base)
		m[extra] = true
		return m
	}
	tests := map[string]struct {
		held    map[string]bool
		version string
		want    string // in the missing list; "" for none missing
	}{
		"MariaDB":          {map[string]bool{"CREATE USER": true, "PROCESS": true, "CONNECTION ADMIN": true}, "10.11.19-MariaDB", ""},
		"MySQL57":          {map[string]bool{"CREATE USER": true, "PROCESS": true, "SUPER": true}, "5.7.44", ""},
		"MySQL80Missing":   {base, "8.0.36", "SET_ANY_DEFINER (MySQL 8.2+) or SET_USER_ID"},
		"MySQL80SetUserID": {with("SET_USER_ID"), "8.0.36", ""},
		"MySQL84Definer":   {with("SET_ANY_DEFINER"), "8.4.3", ""},
		"NoCreateUser":     {map[string]bool{"PROCESS": true, "SUPER": true}, "10.6.1-MariaDB", "CREATE USER (to create, lock and drop users)"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := strings.Join(missingAdminPrivileges(tt.held, tt.version), "; ")
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("missing = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTransportWarning(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		network, addr, tls, want string
	}{
		"Loopback":      {"tcp", "127.0.0.1:3306", "", ""},
		"Localhost":     {"tcp", "localhost:3306", "", ""},
		"Socket":        {"unix", "/run/mysqld/mysqld.sock", "", ""},
		"RemotePlain":   {"tcp", "db.internal:3306", "", "db.internal without TLS"},
		"RemoteFalse":   {"tcp", "10.0.0.5:3306", "false", "without TLS"},
		"RemoteSkip":    {"tcp", "db.internal:3306", "skip-verify", "does not verify"},
		"RemotePreferr": {"tcp", "db.internal:3306", "preferred", "does not verify"},
		"RemoteTLS":     {"tcp", "db.internal:3306", "true", ""},
		"RemoteCustom":  {"tcp", "db.internal:3306", "corp-ca", ""},
	} {
		got := transportWarning(tt.network, tt.addr, tt.tls)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("%s: transportWarning = %q, want %q", name, got, tt.want)
		}
	}
}

func TestLikeMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		p, s string
		want bool
	}{
		{"mysql", "mysql", true}, {"mysq_", "mysql", true}, {"%", "mysql", true}, {"m%l", "mysql", true},
		{`mysq\_`, "mysql", false}, {`my\%`, "my%", true}, {"sys_", "sys", false}, {"%_schema", "performance_schema", true},
		{"orders", "mysql", false}, {"", "", true}, {"_", "", false},
	} {
		if got := likeMatch(tt.p, tt.s); got != tt.want {
			t.Errorf("likeMatch(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestState(t *testing.T) {
	t.Parallel()
	role := &Role{RevocationStatements: []string{"INSERT INTO audit.r VALUES ('{{name}}')", "DO 1"}}
	b := newState(role)
	if got, want := string(b), `{"v":1,"revocation_statements":["INSERT INTO audit.r VALUES ('{{name}}')","DO 1"]}`; got != want {
		t.Errorf("newState = %s, want %s", got, want)
	}
	s, err := decodeState(b)
	if err != nil || !slices.Equal(s.RevocationStatements, role.RevocationStatements) {
		t.Errorf("decodeState(newState) = %+v, %v; want the statements back", s, err)
	}
	if got := string(newState(&Role{})); got != `{"v":1}` {
		t.Errorf("newState of a role without revocation statements = %s, want {\"v\":1}", got)
	}
	for name, tt := range map[string]struct{ state, wantErr string }{
		"NotJSON":        {`credbroker_rv_0123456789abcdef`, "not this plugin's"},
		"NoVersion":      {`{"revocation_statements":["DO 1"]}`, "version 0"},
		"FutureVersion":  {`{"v":2}`, "version 2"},
		"Password":       {`{"v":1,"revocation_statements":["SET PASSWORD FOR {{name}} = {{password}}"]}`, "unknown placeholder"},
		"RefusedGrant":   {`{"v":1,"revocation_statements":["GRANT SUPER ON *.* TO {{name}}"]}`, "SUPER"},
		"OtherAccount":   {`{"v":1,"revocation_statements":["DROP USER root"]}`, "root"},
		"UnclosedQuote":  {`{"v":1,"revocation_statements":["DO 'x"]}`, "unclosed"},
		"WrongFieldType": {`{"v":1,"revocation_statements":"DO 1"}`, "not this plugin's"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeState([]byte(tt.state)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decodeState(%s) = %v, want an error containing %q", tt.state, err, tt.wantErr)
			}
		})
	}
}

// TestLegacyMarkerKey pins the key of the previous release's marker roles:
// a user it made holds credbroker_rv_<key>, and a changed key would leave
// its revocation statements unrun.
func TestLegacyMarkerKey(t *testing.T) {
	t.Parallel()
	// sha256("INSERT INTO audit.r VALUES ('{{name}}')\x00DO 1")[:8]
	if got, want := legacyMarkerKey([]string{"INSERT INTO audit.r VALUES ('{{name}}')", "DO 1"}), "6ba864c9d157d48e"; got != want {
		t.Errorf("legacyMarkerKey = %s, want %s", got, want)
	}
	if !legacyMarker.MatchString("GRANT `credbroker_rv_" + legacyMarkerKey([]string{"DO 1"}) + "` TO `cb_x_1`@`%`") {
		t.Error("legacyMarker does not match a marker role grant as SHOW GRANTS prints it")
	}
}

// openDialing opens the plugin on adminDSN (given as a file reference, as
// an operator would) with at most maxConns connections, each dialled by dial.
func openDialing(t *testing.T, adminDSN string, maxConns int, dial func(context.Context, string, string) (net.Conn, error)) *Plugin {
	t.Helper()
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(adminDSN), 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := secret.ParseRef("file:" + dsnFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := open(t.Context(), &Connection{DSN: ref, MaxConns: maxConns}, func(cfg *mysql.Config) {
		cfg.DialFunc = dial
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
