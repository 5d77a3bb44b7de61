package mysql_test

import (
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

func describe(t *testing.T) plugins.Metadata {
	t.Helper()
	d, ok := mysql.New().(plugins.Describer)
	if !ok {
		t.Fatal("mysql.New() is not a Describer")
	}
	return d.Describe()
}

func TestDescribeClients(t *testing.T) {
	t.Parallel()
	m := describe(t)
	if len(m.Clients) != 1 || m.Clients[0].Command != "mysql" || m.Clients[0].Args == nil {
		t.Fatalf("Clients = %+v, want the mysql client with arguments", m.Clients)
	}
	args := m.Clients[0].Args
	if got, want := args(map[string]string{"MYSQL_USER": "cb_x_1", "MYSQL_DATABASE": "orders"}), []string{"--user=cb_x_1", "orders"}; !slices.Equal(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
	// A role on *.* names no database: none is passed, rather than "".
	if got, want := args(map[string]string{"MYSQL_USER": "cb_x_1", "MYSQL_DATABASE": ""}), []string{"--user=cb_x_1"}; !slices.Equal(got, want) {
		t.Errorf("Args without a database = %q, want %q", got, want)
	}
}

// TestDemoPrepare prepares the demo backend on the test server, as
// `credbroker dev` does, and uses it as the generated config would: the
// connection and role sections parse, the role passes CheckRole, and a user
// of it reads the demo table.
func TestDemoPrepare(t *testing.T) {
	dsn := plugintest.MySQLDSN(t)
	t.Setenv("CREDBROKER_DEV_MYSQL_DSN", dsn)
	m := describe(t)
	if m.Demo == nil || m.Demo.Prepare == nil {
		t.Fatal("Describe declares no demo backend")
	}
	demo, err := m.Demo.Prepare(t.Context())
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := m.Demo.Prepare(t.Context()); err != nil {
		t.Fatalf("Prepare again: %v", err)
	}
	if got := demo.Env["CREDBROKER_DEV_MYSQL_DSN"]; got != dsn || len(demo.Env) != 1 {
		t.Errorf("Env holds %q, want CREDBROKER_DEV_MYSQL_DSN set to the DSN used", slices.Sorted(maps.Keys(demo.Env)))
	}
	if want := `mysql -u "$MYSQL_USER" credbroker_demo -e 'SELECT * FROM orders'`; !strings.Contains(demo.Try, "creds demo-mysql") || !strings.Contains(demo.Try, want) {
		t.Errorf("Try = %q, want the demo-mysql banner line", demo.Try)
	}
	conn, err := mysql.Driver{}.ParseConnection(decoder(demo.Connection))
	if err != nil {
		t.Fatalf("ParseConnection(%s): %v", demo.Connection, err)
	}
	if conn.DSN.String() != "env:CREDBROKER_DEV_MYSQL_DSN" {
		t.Errorf("the demo connection's dsn is %s, want env:CREDBROKER_DEV_MYSQL_DSN", conn.DSN)
	}
	role, warnings, err := mysql.Driver{}.ParseRole(decoder(demo.Role))
	if err != nil {
		t.Fatalf("ParseRole(%s): %v", demo.Role, err)
	}
	if len(warnings) > 0 {
		t.Errorf("ParseRole(%s) warns: %q", demo.Role, warnings)
	}
	if len(role.Grants) != 1 || !slices.Equal(role.Grants[0].Privileges, []string{"SELECT"}) || role.Grants[0].On != "credbroker_demo.*" {
		t.Errorf("the demo role grants %+v, want SELECT on credbroker_demo.*", role.Grants)
	}

	p := open(t, conn)
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Fatalf("CheckRole of the demo role: %v", err)
	}
	cred := create(t, p, role)
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd = cred.Username, cred.Password.Reveal()
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(cred.Fields["host"], cred.Fields["port"])
	cfg.DBName, cfg.Timeout = cred.Fields["database"], 5*time.Second
	var n int
	if err := queryRow(t, cfg.FormatDSN(), "SELECT COUNT(*) FROM orders", nil, &n); err != nil {
		t.Fatalf("SELECT from the demo table as the demo role: %v", plugins.Sanitize(err, cred.Password))
	}
	if n < 1 {
		t.Errorf("the demo table holds %d rows, want at least the one Prepare inserts", n)
	}
}

func TestDemoPrepareFails(t *testing.T) {
	for name, tt := range map[string]struct{ dsn, wantErr string }{
		"NothingAnswers": {"admin:demo-pw-never-printed@tcp(127.0.0.1:1)/?timeout=2s", "127.0.0.1:1"},
		"NotADSN":        {"admin:demo-pw-never-printed@tcp(127.0.0.1:3306", "CREDBROKER_DEV_MYSQL_DSN is not a MySQL DSN"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("CREDBROKER_DEV_MYSQL_DSN", tt.dsn)
			_, err := describe(t).Demo.Prepare(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Prepare = %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "demo-pw-never-printed") {
				t.Errorf("the error quotes the DSN's password: %v", err)
			}
		})
	}
}
