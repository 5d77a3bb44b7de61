package mysql_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mysql"
)

func TestParseConnection(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		yaml    string
		want    mysql.Connection // compared without DSN
		wantDSN string
		wantErr string
	}{
		"Minimal": {
			yaml: "dsn: env:MYSQL_ADMIN", wantDSN: "env:MYSQL_ADMIN",
			want: mysql.Connection{MaxConns: 4},
		},
		"Full": {
			yaml:    "{dsn: 'file:/run/secrets/mysql', max_conns: 8, host: db.internal, port: 3307}",
			wantDSN: "file:/run/secrets/mysql",
			want:    mysql.Connection{MaxConns: 8, Host: "db.internal", Port: 3307},
		},
		"InlineDSN":     {yaml: "dsn: 'root:pw@tcp(127.0.0.1:3306)/'", wantErr: "inline"},
		"RelativeFile":  {yaml: "dsn: file:secrets/mysql", wantErr: "absolute"},
		"MissingDSN":    {yaml: "max_conns: 2", wantErr: "dsn: required"},
		"UnknownKey":    {yaml: "dsn: env:M\ndatabase: orders", wantErr: "database"},
		"NegativeConns": {yaml: "dsn: env:M\nmax_conns: -1", wantErr: "max_conns"},
		"BadPort":       {yaml: "dsn: env:M\nport: 70000", wantErr: "port: 70000"},
		"HostWithPort":  {yaml: "dsn: env:M\nhost: 'db:3306/x'", wantErr: "host"},
		"NotAMap":       {yaml: "[dsn]", wantErr: "cannot unmarshal"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := mysql.Driver{}.ParseConnection(decoder(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConnection = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConnection: %v", err)
			}
			c := *got
			if c.DSN.String() != tt.wantDSN {
				t.Errorf("DSN = %s, want %s", c.DSN, tt.wantDSN)
			}
			c.DSN = tt.want.DSN
			if c != tt.want {
				t.Errorf("ParseConnection = %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		yaml        string
		check       func(t *testing.T, r *mysql.Role)
		wantWarning string
		wantErr     string
	}{
		"Grants": {
			yaml: `grants: [{privileges: [select, "create  view"], on: orders.*}, {privileges: [all privileges], on: "audit.events"}]`,
			check: func(t *testing.T, r *mysql.Role) {
				if got := r.Grants[0].Privileges; !slices.Equal(got, []string{"SELECT", "CREATE VIEW"}) {
					t.Errorf("privileges = %v, want them upper case, blanks collapsed", got)
				}
				if got := r.Grants[1].Privileges; !slices.Equal(got, []string{"ALL"}) {
					t.Errorf("privileges = %v, want [ALL]", got)
				}
			},
		},
		"Host":            {yaml: `{host: "10.0.%", grants: [{privileges: [SELECT], on: "db.*"}]}`},
		"BacktickedNames": {yaml: "grants: [{privileges: [SELECT], on: '`my.db`.`a``b`'}]"},
		"Everything":      {yaml: `grants: [{privileges: [SHOW DATABASES, show view], on: "*.*"}]`, wantWarning: "every database"},
		"DatabasePrivOnDB": {
			yaml: `grants: [{privileges: [EXECUTE, LOCK TABLES], on: "db.*"}]`,
		},
		"CreationStatements": {
			yaml: `creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON orders.* TO '{{name}}'@'%'"]`,
		},
		"CreationUsernameAlias": {
			yaml: `creation_statements: ["CREATE USER {{username}} IDENTIFIED WITH mysql_native_password BY '{{password}}'"]`,
		},
		"CreationVia": {
			yaml: `creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{{password}}')"]`,
		},
		"RevocationTooLarge": {
			yaml:    "grants: [{privileges: [SELECT], on: db.t}]\nrevocation_statements: [\"DO '" + strings.Repeat("x", 16<<10) + "'\"]",
			wantErr: "revocation_statements: 16",
		},
		"Revocation": {
			yaml: "grants: [{privileges: [SELECT], on: db.t}]\nrevocation_statements: [\"INSERT INTO audit.r VALUES ('{{name}}')\"]",
		},

		"Nothing":          {yaml: "{}", wantErr: "one of grants or creation_statements"},
		"UnknownKey":       {yaml: "grant: [{privileges: [SELECT], on: db.*}]", wantErr: "grant"},
		"UnknownGrantKey":  {yaml: "grants: [{privileges: [SELECT], on: db.*, table: t}]", wantErr: "table"},
		"UnknownPrivilege": {yaml: `grants: [{privileges: [SELECT, SELEKT], on: db.*}]`, wantErr: `grants[0].privileges[1]: unknown privilege "SELEKT"`},
		"GrantOption":      {yaml: `grants: [{privileges: [GRANT OPTION], on: db.*}]`, wantErr: `grants[0].privileges[0]: GRANT OPTION on db.* is refused`},
		"Super":            {yaml: `grants: [{privileges: [SUPER], on: "*.*"}]`, wantErr: `SUPER on *.* is refused: it is administrative`},
		"Injection":        {yaml: `grants: [{privileges: ["SELECT ON *.* TO x; --"], on: db.*}]`, wantErr: "unknown privilege"},
		"AllWithOthers":    {yaml: `grants: [{privileges: [ALL, SELECT], on: db.*}]`, wantErr: "grants[0].privileges[0]: ALL cannot be combined"},
		"Twice":            {yaml: `grants: [{privileges: [SELECT, select], on: db.*}]`, wantErr: "grants[0].privileges[1]: SELECT is listed twice"},
		"NoPrivileges":     {yaml: `grants: [{on: db.*}]`, wantErr: "grants[0].privileges: required"},
		"NoOn":             {yaml: `grants: [{privileges: [SELECT]}]`, wantErr: "grants[0].on: required"},
		"Unqualified":      {yaml: `grants: [{privileges: [SELECT], on: orders}]`, wantErr: "grants[0].on"},
		"StarDatabase":     {yaml: `grants: [{privileges: [SELECT], on: "*.t"}]`, wantErr: `grants[0].on: "*.t"`},
		"ThreeParts":       {yaml: `grants: [{privileges: [SELECT], on: a.b.c}]`, wantErr: "grants[0].on"},
		"EmptyTable":       {yaml: `grants: [{privileges: [SELECT], on: "db."}]`, wantErr: "empty name"},
		"Unterminated":     {yaml: "grants: [{privileges: [SELECT], on: '`db.*'}]", wantErr: "unterminated backtick"},
		"BacktickUnquoted": {yaml: "grants: [{privileges: [SELECT], on: 'a`b.*'}]", wantErr: "in backticks"},
		"TrailingSpace":    {yaml: "grants: [{privileges: [SELECT], on: '`db `.*'}]", wantErr: "ends with a space"},
		"LongName":         {yaml: `grants: [{privileges: [SELECT], on: "` + strings.Repeat("d", 65) + `.*"}]`, wantErr: "longer than 64"},
		"GlobalOnDB":       {yaml: `grants: [{privileges: [SHOW DATABASES], on: db.*}]`, wantErr: `grants[0].privileges[0]: SHOW DATABASES is a global privilege`},
		"DatabasePrivOnTable": {
			yaml:    `grants: [{privileges: [EXECUTE], on: db.t}]`,
			wantErr: `grants[0].privileges[0]: EXECUTE is granted on databases`,
		},
		"SecondGrant": {
			yaml:    `grants: [{privileges: [SELECT], on: db.*}, {privileges: [DROPP], on: db.*}]`,
			wantErr: `grants[1].privileges[0]: unknown privilege "DROPP"`,
		},
		"BadHost":           {yaml: `{host: "x'; DROP", grants: [{privileges: [SELECT], on: db.*}]}`, wantErr: "host:"},
		"HostWithStatement": {yaml: `{host: "%", creation_statements: ["CREATE USER {{name}} IDENTIFIED BY {{password}}"]}`, wantErr: "host: applies to grants only"},
		"GrantsAndCreation": {
			yaml:    "grants: [{privileges: [SELECT], on: db.*}]\ncreation_statements: ['CREATE USER {{name}} IDENTIFIED BY {{password}}']",
			wantErr: "cannot be combined",
		},
		"CreationNoName":     {yaml: `creation_statements: ["CREATE USER bob IDENTIFIED BY '{{password}}'"]`, wantErr: "{{name}}"},
		"CreationNoPassword": {yaml: `creation_statements: ["CREATE USER '{{name}}'@'%'"]`, wantErr: "{{password}}"},
		"PlaintextPassword": {
			yaml:    `creation_statements: ["CREATE USER '{{name}}'@'%'", "SET PASSWORD FOR '{{name}}'@'%' = PASSWORD('{{password}}')"]`,
			wantErr: "creation_statements[1]: {{password}} may only appear as IDENTIFIED BY",
		},
		"CachingSHA2": {
			yaml:    `creation_statements: ["CREATE USER '{{name}}' IDENTIFIED WITH caching_sha2_password BY '{{password}}'"]`,
			wantErr: "mysql_native_password hash",
		},
		"HashedPassword": {
			yaml:    `creation_statements: ["CREATE USER '{{name}}' IDENTIFIED BY PASSWORD '{{password}}'"]`,
			wantErr: "may only appear",
		},
		"UnevenQuotes": {
			yaml:    `creation_statements: ["CREATE USER '{{name}}' IDENTIFIED BY '{{password}}\""]`,
			wantErr: "quotes around {{password}} do not match",
		},
		"UnclosedQuote": {
			yaml:    `creation_statements: ["CREATE USER '{{name}} IDENTIFIED BY {{password}}"]`,
			wantErr: "creation_statements[0]: unclosed ' quote",
		},
		"EmptyStatement": {
			yaml:    `creation_statements: ["CREATE USER {{name}} IDENTIFIED BY {{password}}", " ; "]`,
			wantErr: "creation_statements[1]: empty statement",
		},
		"UnknownPlaceholder": {
			yaml:    `creation_statements: ["CREATE USER {{name}} IDENTIFIED BY {{pasword}}"]`,
			wantErr: `creation_statements[0]: unknown placeholder "{{pasword}}"`,
		},
		"RevocationPassword": {
			yaml:    "grants: [{privileges: [SELECT], on: db.*}]\nrevocation_statements: ['SET PASSWORD FOR {{name}} = {{password}}']",
			wantErr: `revocation_statements[0]: unknown placeholder "{{password}}"`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, warnings, err := mysql.Driver{}.ParseRole(decoder(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRole = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRole: %v", err)
			}
			switch {
			case tt.wantWarning == "" && len(warnings) > 0:
				t.Errorf("warnings = %q, want none", warnings)
			case tt.wantWarning != "" && !strings.Contains(strings.Join(warnings, "\n"), tt.wantWarning):
				t.Errorf("warnings = %q, want one containing %q", warnings, tt.wantWarning)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestDriver(t *testing.T) {
	t.Parallel()
	d := mysql.Driver{}
	if d.Name() != "mysql" || d.UsernameLimit() != 32 {
		t.Errorf("Driver = %q, limit %d; want mysql, 32", d.Name(), d.UsernameLimit())
	}
	if _, err := d.ParseConnection(nil); err == nil {
		t.Error("ParseConnection(nil) succeeded")
	}
	if _, _, err := d.ParseRole(nil); err == nil {
		t.Error("ParseRole(nil) succeeded")
	}
	if _, err := mysql.New().Open(t.Context(), "dsn"); err == nil || !strings.Contains(err.Error(), "want *mysql.Connection") {
		t.Errorf("Open with a string = %v, want an error naming the expected type", err)
	}
	if _, err := d.Open(t.Context(), nil); err == nil {
		t.Error("Open(nil) succeeded")
	}
	if n := mysql.New().Name(); n != "mysql" {
		t.Errorf("New().Name() = %q", n)
	}
}

// TestParseRoleRefusesServerReach: what would let a holder reach past its
// role (write the accounts, read other accounts' secrets, make users) is
// refused, in grants and in creation statements, with the path, the
// privilege, the object and why.
func TestParseRoleRefusesServerReach(t *testing.T) {
	t.Parallel()
	stmt := func(s string) string {
		return `creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", "` + s + `"]`
	}
	tests := map[string]struct{ yaml, wantErr string }{
		// The attack of issue 6: write mysql.global_priv, become a superuser.
		"InsertOnMySQL":      {`grants: [{privileges: [INSERT, UPDATE], on: "mysql.*"}]`, `grants[0].privileges[0]: INSERT on mysql.* is refused: mysql is a system schema: it holds the accounts`},
		"UpperCaseMySQL":     {`grants: [{privileges: [SELECT], on: "MySQL.global_priv"}]`, `SELECT on MySQL.global_priv is refused`},
		"BacktickedMySQL":    {"grants: [{privileges: [SELECT], on: '`mysql`.`user`'}]", `mysql is a system schema`},
		"Sys":                {`grants: [{privileges: [EXECUTE], on: "sys.*"}]`, `sys is a system schema`},
		"PerformanceSchema":  {`grants: [{privileges: [SELECT], on: "performance_schema.*"}]`, `performance_schema is a system schema`},
		"InformationSchema":  {`grants: [{privileges: [SELECT], on: "INFORMATION_SCHEMA.*"}]`, `information_schema is a system schema`},
		"AllOnEverything":    {`grants: [{privileges: [ALL], on: "*.*"}]`, `grants[0].privileges[0]: ALL on *.* is refused: "*.*" includes the mysql system schema`},
		"SelectOnEverything": {`grants: [{privileges: [SELECT], on: "*.*"}]`, `SELECT on *.* is refused: "*.*" includes the mysql system schema, so it would let a holder read every account's password hash`},
		"InsertOnEverything": {`grants: [{privileges: [INSERT], on: "*.*"}]`, `INSERT on *.* is refused`},
		"ExecuteEverything":  {`grants: [{privileges: [EXECUTE], on: "*.*"}]`, `run every stored routine`},
		"CreateOnEverything": {`grants: [{privileges: [CREATE], on: "*.*"}]`, `CREATE on *.* is refused`},
		"File":               {`grants: [{privileges: [FILE], on: "*.*"}]`, `FILE on *.* is refused: it reads and writes files`},
		"Process":            {`grants: [{privileges: [PROCESS], on: "*.*"}]`, `PROCESS on *.* is refused`},
		"Shutdown":           {`grants: [{privileges: [SHUTDOWN], on: "*.*"}]`, `SHUTDOWN on *.* is refused`},
		"CreateUser":         {`grants: [{privileges: [CREATE USER], on: "*.*"}]`, `CREATE USER on *.* is refused: it lets a holder make accounts`},
		"Reload":             {`grants: [{privileges: [RELOAD], on: "*.*"}]`, `RELOAD on *.* is refused`},
		"ReplicationSlave":   {`grants: [{privileges: [REPLICATION SLAVE], on: "*.*"}]`, `REPLICATION SLAVE on *.* is refused: it reads the binary log`},
		"ReplicationClient":  {`grants: [{privileges: [REPLICATION CLIENT], on: "*.*"}]`, `REPLICATION CLIENT on *.* is refused: on MariaDB 10.5+ it is BINLOG MONITOR`},
		"BinlogMonitor":      {`grants: [{privileges: [binlog monitor], on: "*.*"}]`, `BINLOG MONITOR on *.* is refused`},
		"SetUser":            {`grants: [{privileges: [SET USER], on: "*.*"}]`, `SET USER on *.* is refused`},
		"RefusedOnBadOn":     {`grants: [{privileges: [SUPER], on: "x"}]`, `grants[0].privileges[0]: SUPER is refused`},
		"MySQLDynamic":       {`grants: [{privileges: [SET_USER_ID], on: "*.*"}]`, `unknown privilege "SET_USER_ID"`},

		"StmtInsertOnMySQL":   {stmt(`GRANT INSERT, UPDATE ON mysql.* TO '{{name}}'@'%'`), `creation_statements[1]: INSERT on mysql.* is refused`},
		"StmtAllOnEverything": {stmt(`grant all privileges on *.* to {{name}}`), `creation_statements[1]: ALL on *.* is refused`},
		"StmtVaultDefault": {
			`creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';GRANT SELECT ON *.* TO '{{name}}'@'%';"]`,
			`creation_statements[0]#2: SELECT on *.* is refused`,
		},
		"StmtBacktickMySQL":   {stmt("GRANT SELECT ON `MYSQL`.`global_priv` TO `{{name}}`@`%`"), `SELECT on MYSQL.global_priv is refused`},
		"StmtTableKeyword":    {stmt(`GRANT SELECT ON TABLE mysql.user TO '{{name}}'`), `mysql is a system schema`},
		"StmtWildcardMySQL":   {stmt("GRANT SELECT ON `mysq_`.* TO '{{name}}'"), `matches the system schema mysql`},
		"StmtPercentDB":       {stmt("GRANT SELECT ON `%`.* TO '{{name}}'"), `matches the system schema`},
		"StmtRoutineOfSys":    {stmt(`GRANT EXECUTE ON PROCEDURE sys.ps_setup_enable_thread TO '{{name}}'`), `EXECUTE on a routine of sys is refused`},
		"StmtWithGrantOption": {stmt(`GRANT SELECT ON app.* TO '{{name}}'@'%' WITH GRANT OPTION`), `WITH GRANT OPTION is refused`},
		"StmtGrantOption":     {stmt(`GRANT GRANT OPTION ON app.* TO '{{name}}'`), `GRANT OPTION on app.* is refused`},
		"StmtSuper":           {stmt(`GRANT SUPER ON *.* TO '{{name}}'`), `SUPER on *.* is refused`},
		"StmtDynamic":         {stmt(`GRANT CONNECTION_ADMIN ON *.* TO '{{name}}'`), `unknown privilege "CONNECTION_ADMIN"`},
		"StmtOtherGrantee":    {stmt(`GRANT SELECT ON app.* TO '{{name}}'@'%', 'mallory'@'%'`), `GRANT … TO mallory is refused`},
		"StmtCurrentUser":     {stmt(`GRANT SELECT ON app.* TO CURRENT_USER()`), `GRANT … TO CURRENT_USER() is refused`},
		"StmtRole":            {stmt(`GRANT app_admin TO '{{name}}'`), `grants roles, which is refused`},
		"StmtProxy":           {stmt(`GRANT PROXY ON 'root'@'localhost' TO '{{name}}'`), `GRANT PROXY is refused`},
		"StmtUnqualified":     {stmt(`GRANT SELECT ON items TO '{{name}}'`), `names no database`},
		"StmtCreateOther":     {stmt(`CREATE USER 'backdoor'@'%' IDENTIFIED BY 'x'`), `creation_statements[1]: CREATE USER backdoor is refused`},
		"StmtCreateSecond": {
			`creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}', 'backdoor'@'%' IDENTIFIED BY 'x'"]`,
			`CREATE USER backdoor is refused`,
		},
		"StmtAlterOther":     {stmt(`ALTER USER 'root'@'localhost' IDENTIFIED BY 'x'`), `ALTER USER root is refused`},
		"StmtAlterAdmin":     {stmt(`ALTER USER CURRENT_USER() ACCOUNT UNLOCK`), `ALTER USER CURRENT_USER() is refused`},
		"StmtDropOther":      {stmt(`DROP USER IF EXISTS 'app'@'%'`), `DROP USER app is refused`},
		"StmtRename":         {stmt(`RENAME USER '{{name}}'@'%' TO 'kept'@'%'`), `RENAME USER is refused`},
		"StmtCreateRole":     {stmt(`CREATE ROLE sneaky`), `CREATE ROLE is refused`},
		"StmtDefaultRole":    {stmt(`SET DEFAULT ROLE app_admin FOR '{{name}}'`), `SET DEFAULT ROLE is refused`},
		"StmtSetPasswordOwn": {stmt(`SET PASSWORD = PASSWORD('x')`), `SET PASSWORD without FOR`},
		"StmtRevokeOther":    {stmt(`REVOKE SELECT ON app.* FROM 'app'@'%'`), `REVOKE app is refused`},
		"StmtWriteMySQL":     {stmt(`UPDATE mysql.global_priv SET Priv = '{}' WHERE User = '{{name}}'`), `names the system schema mysql`},
		"StmtInsertMySQL":    {stmt("INSERT INTO `mysql`.global_priv VALUES ('%', '{{name}}', '{}')"), `names the system schema mysql`},
		"RevocationCreatesUser": {
			"grants: [{privileges: [SELECT], on: db.*}]\nrevocation_statements: [\"CREATE USER 'keeper'@'%' IDENTIFIED BY 'x'\"]",
			`revocation_statements[0]: CREATE USER keeper is refused`,
		},
		"RevocationGrantsAll": {
			"grants: [{privileges: [SELECT], on: db.*}]\nrevocation_statements: [\"GRANT ALL ON *.* TO 'app'@'%'\"]",
			`revocation_statements[0]: ALL on *.* is refused`,
		},
		"StmtBackslash":    {stmt(`GRANT SELECT ON app.* TO '{{name}}'@'a\\\\' , 'mallory'@'%'`), `GRANT statement not checked: a backslash in a quoted string`},
		"StmtGrantComment": {stmt(`GRANT /*!ALL ON *.* TO x, */ SELECT ON app.* TO '{{name}}'`), `GRANT statement not checked: it holds a comment`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, err := mysql.Driver{}.ParseRole(decoder(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseRole = %v\nwant an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestParseRoleStatementsAccepted: creation statements that give the issued
// user application privileges only pass, and what credbroker cannot read
// passes with a warning naming the statement.
func TestParseRoleStatementsAccepted(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		statements  string
		wantWarning string
	}{
		"Plain":         {`["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT, INSERT ON orders.* TO '{{name}}'@'%'"]`, ""},
		"Columns":       {`["CREATE USER {{name}} IDENTIFIED BY '{{password}}'", "GRANT SELECT (id, name), UPDATE (name) ON orders.items TO {{name}}"]`, ""},
		"EscapedDB":     {"[\"CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT ALL ON `orders\\\\_db`.* TO `{{name}}`@`%` WITH MAX_QUERIES_PER_HOUR 100\"]", ""},
		"Routine":       {`["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT EXECUTE ON PROCEDURE orders.refresh TO {{name}}"]`, ""},
		"Usage":         {`["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT USAGE ON *.* TO {{name}} REQUIRE SSL WITH MAX_USER_CONNECTIONS 5"]`, ""},
		"ShowDatabases": {`["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT SHOW DATABASES ON *.* TO {{name}}"]`, ""},
		"Options":       {`["CREATE USER IF NOT EXISTS '{{name}}'@'10.%' IDENTIFIED BY '{{password}}' REQUIRE SSL WITH MAX_USER_CONNECTIONS 2 PASSWORD EXPIRE NEVER"]`, ""},
		"AlterOwn":      {`["CREATE USER {{name}} IDENTIFIED BY '{{password}}'", "ALTER USER '{{name}}'@'%' WITH MAX_QUERIES_PER_HOUR 10"]`, ""},
		"Unchecked":     {`["CREATE USER {{name}} IDENTIFIED BY '{{password}}'", "INSERT INTO audit.issued VALUES ('{{name}}', NOW())"]`, "creation_statements[1]: NOT CHECKED"},
		"Commented":     {`["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; /* note */ DO 1"]`, "creation_statements[0]#2: NOT CHECKED"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, warnings, err := mysql.Driver{}.ParseRole(decoder("creation_statements: " + tt.statements))
			if err != nil {
				t.Fatalf("ParseRole: %v", err)
			}
			got := strings.Join(warnings, "\n")
			if tt.wantWarning == "" && got != "" || !strings.Contains(got, tt.wantWarning) {
				t.Errorf("warnings = %q, want %q", got, tt.wantWarning)
			}
		})
	}
}

// FuzzParseRole feeds arbitrary YAML role sections to ParseRole: it never
// panics, and no role it accepts grants a privilege on the refused lists,
// in grants or in the GRANT statements of creation_statements (checked here
// by an oracle of its own, not ParseRole's parser). Its seed corpus runs in
// every go test.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{
		`grants: [{privileges: [SELECT], on: "db.*"}]`,
		"grants: [{privileges: [SELECT, INSERT], on: '`a.b`.`c``d`'}]",
		`creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON x.* TO '{{name}}'"]`,
		"revocation_statements: ['{{name}}']\ngrants: [{privileges: [ALL], on: '*.*'}]",
		`grants: [{privileges: [INSERT, UPDATE], on: "mysql.*"}]`,
		`grants: [{privileges: [SELECT], on: "MYSQL.user"}]`,
		`grants: [{privileges: [SHOW DATABASES], on: "*.*"}]`,
		`grants: [{privileges: [REPLICATION SLAVE], on: "*.*"}]`,
		`grants: [{privileges: [select], on: "*.*"}]`,
		`creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'", "GRANT ALL ON *.* TO {{name}} WITH GRANT OPTION"]`,
		`creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; grant insert on mysql.global_priv to {{name}}"]`,
		"creation_statements: [\"CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT SELECT ON `mysq_`.* TO {{name}}\"]",
		"creation_statements: [\"CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT SELECT ON `sys`.`x` TO {{name}}\"]",
		`creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT SHOW VIEW ON *.* TO {{name}}"]`,
		`creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT PROCESS, SELECT ON *.* TO {{name}}"]`,
		`creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT SELECT (a) ON db.t TO {{name}}, root"]`,
		`creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT /* x */ ALL ON *.* TO {{name}}"]`,
		`creation_statements: ["CREATE USER {{name}} IDENTIFIED BY '{{password}}'; GRANT root_role TO {{name}}"]`,
	} {
		f.Add(s)
	}
	// The oracle's view of a GRANT statement: upper case, names unquoted,
	// a blank around every punctuation mark.
	spaced := strings.NewReplacer("`", " ", `"`, " ", "'", " ' ", "(", " ( ", ")", " ) ", ",", " , ", "@", " @ ", ".", " . ", "*", " * ", "=", " = ")
	grantOn := regexp.MustCompile(`^GRANT (.*?) ON (?:TABLE |FUNCTION |PROCEDURE |PACKAGE (?:BODY )?)?(\S+) \. (\S+) TO\b`)
	columns := regexp.MustCompile(`\( [^)]*\)`)
	system := regexp.MustCompile(`^(MYSQL|SYS|PERFORMANCE_SCHEMA|INFORMATION_SCHEMA)$`)
	refused := []string{"GRANT OPTION", "SUPER", "FILE", "PROCESS", "SHUTDOWN", "CREATE USER",
		"RELOAD", "PROXY", "REPLICATION SLAVE", "REPLICATION CLIENT", "BINLOG MONITOR", "SET USER", "CONNECTION ADMIN"}
	onEverything := []string{"SHOW DATABASES", "SHOW VIEW", "USAGE"}
	check := func(t *testing.T, what string, privs []string, db, table string, pattern bool) {
		t.Helper()
		for _, p := range privs {
			p = strings.Join(strings.Fields(p), " ")
			if slices.Contains(refused, p) {
				t.Errorf("%s: accepted the refused privilege %s", what, p)
			}
			if db == "*" && !slices.Contains(onEverything, p) {
				t.Errorf("%s: accepted %s on *.*", what, p)
			}
			if system.MatchString(strings.ToUpper(db)) || pattern && table == "*" && (strings.Contains(db, "%") || likeSystem(db)) {
				t.Errorf("%s: accepted %s on %s.%s, a system schema", what, p, db, table)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		got, _, err := mysql.Driver{}.ParseRole(decoder(src))
		if err != nil {
			return
		}
		role := got
		if state := mysql.EncodeState(role); len(state) > plugins.MaxStateSize {
			t.Errorf("accepted revocation_statements whose state is %d bytes, over the %d a lease keeps", len(state), plugins.MaxStateSize)
		}
		for i, g := range role.Grants {
			db, table, _ := strings.Cut(strings.Trim(strings.TrimSpace(g.On), "`"), ".")
			db = strings.Trim(db, "`")
			if strings.HasPrefix(strings.TrimSpace(g.On), "`") {
				db = strings.SplitN(strings.TrimPrefix(strings.TrimSpace(g.On), "`"), "`", 2)[0]
			}
			check(t, fmt.Sprintf("grants[%d]", i), g.Privileges, db, table, false)
		}
		for i, s := range role.CreationStatements {
			for _, stmt := range strings.Split(s, ";") {
				norm := strings.Join(strings.Fields(spaced.Replace(strings.ToUpper(stmt))), " ")
				if !strings.HasPrefix(norm, "GRANT ") {
					continue
				}
				if strings.Contains(norm, "GRANT OPTION") || strings.Contains(norm, "ADMIN OPTION") || strings.HasPrefix(norm, "GRANT PROXY ") {
					t.Errorf("creation_statements[%d]: accepted %q", i, stmt)
				}
				m := grantOn.FindStringSubmatch(norm)
				if m == nil {
					if !strings.Contains(norm, "/ *") {
						t.Errorf("creation_statements[%d]: accepted a GRANT the oracle cannot read (a role grant?): %q", i, stmt)
					}
					continue
				}
				var privs []string
				for _, p := range strings.Split(columns.ReplaceAllString(m[1], ""), ",") {
					privs = append(privs, strings.TrimSpace(p))
				}
				check(t, fmt.Sprintf("creation_statements[%d]", i), privs, strings.TrimSpace(m[2]), m[3], true)
			}
		}
	})
}

// likeSystem reports whether the GRANT pattern db (upper case, _ a
// wildcard, no %) matches a system schema.
func likeSystem(db string) bool {
	for _, s := range []string{"MYSQL", "SYS", "PERFORMANCE_SCHEMA", "INFORMATION_SCHEMA"} {
		if len(db) != len(s) {
			continue
		}
		ok := true
		for k := range len(s) {
			if db[k] != '_' && db[k] != s[k] {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}
