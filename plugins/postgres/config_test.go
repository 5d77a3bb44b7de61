package postgres_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
)

func TestParseConnection(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		yaml    string
		want    postgres.Connection // compared without DSN
		wantDSN string
		wantErr string
	}{
		"Minimal": {
			yaml: "dsn: env:PG_ADMIN", wantDSN: "env:PG_ADMIN",
			want: postgres.Connection{MaxConns: 4},
		},
		"Full": {
			yaml:    "{dsn: 'file:/run/secrets/pg', max_conns: 8, host: db.internal, port: 6432, database: orders}",
			wantDSN: "file:/run/secrets/pg",
			want:    postgres.Connection{MaxConns: 8, Host: "db.internal", Port: 6432, Database: "orders"},
		},
		"InlineDSN":     {yaml: "dsn: postgres://admin:pw@db/postgres", wantErr: "inline"},
		"RelativeFile":  {yaml: "dsn: file:secrets/pg", wantErr: "absolute"},
		"MissingDSN":    {yaml: "max_conns: 2", wantErr: "dsn: required"},
		"UnknownKey":    {yaml: "dsn: env:PG\ndns: env:PG", wantErr: "dns"},
		"NegativeConns": {yaml: "dsn: env:PG\nmax_conns: -1", wantErr: "max_conns"},
		"BadPort":       {yaml: "dsn: env:PG\nport: 70000", wantErr: "port"},
		"NotAMap":       {yaml: "[dsn]", wantErr: "cannot unmarshal"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := postgres.Driver{}.ParseConnection(decoder(tt.yaml))
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
		check       func(t *testing.T, r *postgres.Role)
		wantWarning string
		wantErr     string
	}{
		"MemberOf": {
			yaml: "member_of: [orders_read, audit]",
			check: func(t *testing.T, r *postgres.Role) {
				if !slices.Equal(r.MemberOf, []string{"orders_read", "audit"}) {
					t.Errorf("MemberOf = %v", r.MemberOf)
				}
			},
		},
		"Grants": {
			yaml: `grants: [{privileges: [select, Insert], schema: public, tables: ["*"]}, {privileges: [ALL], schema: app, tables: [a, b]}]`,
			check: func(t *testing.T, r *postgres.Role) {
				if got := r.Grants[0].Privileges; !slices.Equal(got, []string{"SELECT", "INSERT"}) {
					t.Errorf("privileges = %v, want them upper case", got)
				}
			},
			wantWarning: "member_of",
		},
		"GrantsAndMemberOf": {
			yaml:        "member_of: [r]\ngrants: [{privileges: [SELECT], schema: s, tables: [t]}]",
			wantWarning: "ACL",
		},
		"AllPrivileges": {yaml: `grants: [{privileges: [all privileges], schema: s, tables: ["*"]}]`, wantWarning: "grants"},
		"CreationStatements": {
			yaml: `creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}"]`,
		},
		"CreationWithoutExpiration": {
			yaml:        `creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}}"]`,
			wantWarning: "{{expiration}}",
		},
		"UnknownPrivilege": {
			yaml:    `grants: [{privileges: [SELECT, SELEKT], schema: public, tables: ["*"]}]`,
			wantErr: `grants[0].privileges[1]: unknown privilege "SELEKT"`,
		},
		"AllWithOthers":   {yaml: `grants: [{privileges: [ALL, SELECT], schema: s, tables: ["*"]}]`, wantErr: "grants[0].privileges[0]: ALL cannot be combined"},
		"NoPrivileges":    {yaml: `grants: [{schema: s, tables: ["*"]}]`, wantErr: "grants[0].privileges: required"},
		"EmptySchema":     {yaml: `grants: [{privileges: [SELECT], schema: "", tables: ["*"]}]`, wantErr: "grants[0].schema: required"},
		"NoSchema":        {yaml: `grants: [{privileges: [SELECT], tables: ["*"]}]`, wantErr: "grants[0].schema: required"},
		"NoTables":        {yaml: `grants: [{privileges: [SELECT], schema: s}]`, wantErr: "grants[0].tables: required"},
		"StarAndNames":    {yaml: `grants: [{privileges: [SELECT], schema: s, tables: [a, "*"]}]`, wantErr: "grants[0].tables[1]"},
		"QualifiedTable":  {yaml: `grants: [{privileges: [SELECT], schema: s, tables: [s.a]}]`, wantErr: "grants[0].tables[0]"},
		"SecondGrant":     {yaml: `grants: [{privileges: [SELECT], schema: s, tables: [a]}, {privileges: [DROP], schema: s, tables: [a]}]`, wantErr: `grants[1].privileges[0]: unknown privilege "DROP"`},
		"EmptyMember":     {yaml: `member_of: [""]`, wantErr: "member_of[0]"},
		"Nothing":         {yaml: "{}", wantErr: "one of member_of, grants or creation_statements"},
		"CreationAndRest": {yaml: "member_of: [r]\ncreation_statements: ['CREATE ROLE {{name}} PASSWORD {{password}}']", wantErr: "cannot be combined"},
		"CreationNoName":  {yaml: `creation_statements: ["CREATE ROLE bob PASSWORD {{password}}"]`, wantErr: "{{name}}"},
		"CreationNoPassword": {
			yaml:    `creation_statements: ["CREATE ROLE {{name}} LOGIN"]`,
			wantErr: "{{password}}",
		},
		"UnknownPlaceholder": {
			yaml:    `creation_statements: ["CREATE ROLE {{name}} PASSWORD {{pasword}}"]`,
			wantErr: `creation_statements[0]: unknown placeholder "{{pasword}}"`,
		},
		"RevocationPassword": {
			yaml:    "member_of: [r]\nrevocation_statements: ['ALTER ROLE {{name}} PASSWORD {{password}}']",
			wantErr: `revocation_statements[0]: unknown placeholder "{{password}}"`,
		},
		"UnknownKey": {yaml: "memberof: [r]", wantErr: "memberof"},
		"ReassignOwnedTo": {
			yaml: "member_of: [r]\nreassign_owned_to: attic",
			check: func(t *testing.T, r *postgres.Role) {
				if r.ReassignOwnedTo != "attic" {
					t.Errorf("ReassignOwnedTo = %q", r.ReassignOwnedTo)
				}
			},
		},
		"MemberOfMarker":     {yaml: "member_of: [credbroker_managed]", wantErr: `member_of[0]: "credbroker_managed" is the marker role`},
		"ReassignBlank":      {yaml: "member_of: [r]\nreassign_owned_to: ' '", wantErr: "reassign_owned_to"},
		"ReassignMarker":     {yaml: "member_of: [r]\nreassign_owned_to: credbroker_managed", wantErr: "reassign_owned_to: \"credbroker_managed\" is the marker role"},
		"ReassignPredefined": {yaml: "member_of: [r]\nreassign_owned_to: pg_write_server_files", wantErr: "predefined role"},
		"ReassignToGroup":    {yaml: "member_of: [r]\nreassign_owned_to: r", wantErr: "also in member_of"},
		"ReassignTooLong":    {yaml: "member_of: [r]\nreassign_owned_to: " + strings.Repeat("a", 64), wantErr: "63"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, warnings, err := postgres.Driver{}.ParseRole(decoder(tt.yaml))
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

// FuzzParseRole feeds arbitrary YAML to ParseRole: it never panics, and a role
// it accepts has exactly one form, names only known privileges (upper case,
// ALL alone), no empty or marker group role, and a reassign_owned_to that is
// empty or a plausible role of the operator's own.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{
		"member_of: [a]",
		`grants: [{privileges: [SELECT], schema: public, tables: ["*"]}]`,
		`grants: [{privileges: [select, all privileges], schema: s, tables: [a, b]}]`,
		`creation_statements: ["CREATE ROLE {{name}} PASSWORD {{password}}"]`,
		"revocation_statements: ['{{name}}']\nmember_of: [x]",
		"member_of: [a]\nreassign_owned_to: attic",
		"member_of: [a]\nreassign_owned_to: ''",
		"member_of: [credbroker_managed]",
		"member_of: [a]\nreassign_owned_to: credbroker_managed",
		"member_of: [a]\nreassign_owned_to: pg_read_server_files",
		"member_of: [a]\nreassign_owned_to: a",
		"member_of: [a]\nreassign_owned_to: \"\\0\"",
		"creation_statements: ['CREATE ROLE {{name}} PASSWORD {{password}}']\nreassign_owned_to: attic",
	} {
		f.Add(s)
	}
	known := []string{"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "ALL"}
	f.Fuzz(func(t *testing.T, src string) {
		got, _, err := postgres.Driver{}.ParseRole(decoder(src))
		if err != nil {
			return
		}
		r := got
		direct := len(r.MemberOf) > 0 || len(r.Grants) > 0
		if direct == (len(r.CreationStatements) > 0) {
			t.Errorf("accepted a role with member_of/grants %t and creation_statements %d", direct, len(r.CreationStatements))
		}
		for _, g := range r.Grants {
			for _, p := range g.Privileges {
				if !slices.Contains(known, p) {
					t.Errorf("accepted privilege %q", p)
				}
			}
			if slices.Contains(g.Privileges, "ALL") && len(g.Privileges) > 1 {
				t.Errorf("accepted ALL with other privileges: %q", g.Privileges)
			}
			if strings.TrimSpace(g.Schema) == "" || len(g.Tables) == 0 {
				t.Errorf("accepted a grant without schema or tables: %+v", g)
			}
		}
		for _, m := range r.MemberOf {
			if strings.TrimSpace(m) == "" || m == "credbroker_managed" {
				t.Errorf("accepted member_of %q", m)
			}
		}
		if to := r.ReassignOwnedTo; to != "" {
			if strings.TrimSpace(to) == "" || strings.ContainsRune(to, 0) || len(to) > 63 ||
				to == "credbroker_managed" || strings.HasPrefix(to, "pg_") || slices.Contains(r.MemberOf, to) {
				t.Errorf("accepted reassign_owned_to %q", to)
			}
		}
	})
}

// TestDriverMetadata: the driver the broker gets from New declares psql,
// which needs no arguments since it reads the PG* variables of the
// credential, and those variables' names.
func TestDriverMetadata(t *testing.T) {
	t.Parallel()
	d, ok := postgres.New().(plugins.Describer)
	if !ok {
		t.Fatal("postgres.New() does not describe itself")
	}
	md := d.Describe()
	if len(md.Clients) != 1 || md.Clients[0].Command != "psql" || md.Clients[0].Args != nil {
		t.Errorf("Clients = %+v, want psql without arguments", md.Clients)
	}
	want := []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE"}
	if !slices.Equal(md.Env, want) {
		t.Errorf("Env = %q, want %q", md.Env, want)
	}
	if md.Demo != nil {
		t.Error("Demo is set: credbroker dev sets up the PostgreSQL demo itself")
	}
	if n := postgres.New(); n.Name() != "postgres" || n.UsernameLimit() != 63 {
		t.Errorf("New() is %q with a username limit of %d", n.Name(), n.UsernameLimit())
	}
}
