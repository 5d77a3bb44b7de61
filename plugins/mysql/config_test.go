package mysql_test

import (
	"slices"
	"strings"
	"testing"

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
			c := *got.(*mysql.Connection)
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
		"Everything":      {yaml: `grants: [{privileges: [PROCESS], on: "*.*"}]`, wantWarning: "every database"},
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
		"Revocation": {
			yaml: "grants: [{privileges: [SELECT], on: db.t}]\nrevocation_statements: [\"INSERT INTO audit.r VALUES ('{{name}}')\"]",
		},

		"Nothing":          {yaml: "{}", wantErr: "one of grants or creation_statements"},
		"UnknownKey":       {yaml: "grant: [{privileges: [SELECT], on: db.*}]", wantErr: "grant"},
		"UnknownGrantKey":  {yaml: "grants: [{privileges: [SELECT], on: db.*, table: t}]", wantErr: "table"},
		"UnknownPrivilege": {yaml: `grants: [{privileges: [SELECT, SELEKT], on: db.*}]`, wantErr: `grants[0].privileges[1]: unknown privilege "SELEKT"`},
		"GrantOption":      {yaml: `grants: [{privileges: [GRANT OPTION], on: db.*}]`, wantErr: `unknown privilege "GRANT OPTION"`},
		"Super":            {yaml: `grants: [{privileges: [SUPER], on: "*.*"}]`, wantErr: `unknown privilege "SUPER"`},
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
		"GlobalOnDB":       {yaml: `grants: [{privileges: [PROCESS], on: db.*}]`, wantErr: `grants[0].privileges[0]: PROCESS is a global privilege`},
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
				tt.check(t, got.(*mysql.Role))
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
	if _, err := d.Open(t.Context(), "dsn"); err == nil || !strings.Contains(err.Error(), "want *mysql.Connection") {
		t.Errorf("Open with a string = %v, want an error naming the expected type", err)
	}
}

// FuzzParseRole feeds arbitrary YAML to ParseRole: it never panics, and a role
// it accepts names only known privileges.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{
		`grants: [{privileges: [SELECT], on: "db.*"}]`,
		"grants: [{privileges: [SELECT, INSERT], on: '`a.b`.`c``d`'}]",
		`creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON x.* TO '{{name}}'"]`,
		"revocation_statements: ['{{name}}']\ngrants: [{privileges: [ALL], on: '*.*'}]",
	} {
		f.Add(s)
	}
	known := []string{"ALL", "ALTER", "ALTER ROUTINE", "CREATE", "CREATE ROUTINE", "CREATE TEMPORARY TABLES",
		"CREATE VIEW", "DELETE", "DELETE HISTORY", "DROP", "EVENT", "EXECUTE", "INDEX", "INSERT", "LOCK TABLES",
		"PROCESS", "REFERENCES", "REPLICATION CLIENT", "REPLICATION SLAVE", "SELECT", "SHOW DATABASES",
		"SHOW VIEW", "TRIGGER", "UPDATE"}
	f.Fuzz(func(t *testing.T, src string) {
		got, _, err := mysql.Driver{}.ParseRole(decoder(src))
		if err != nil {
			return
		}
		for _, g := range got.(*mysql.Role).Grants {
			for _, p := range g.Privileges {
				if !slices.Contains(known, p) {
					t.Errorf("accepted privilege %q", p)
				}
			}
		}
	})
}
