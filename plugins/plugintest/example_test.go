package plugintest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/postgres"
)

// testConformance is what a backend's own test file holds, in a TestXxx
// function: it finds the real service, gives the suite a connection and a
// role section as the broker would decode them, and says how to log in with
// an issued credential.
func testConformance(t *testing.T) {
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CREATE TABLE items (id int)"); err != nil {
		t.Fatal(err)
	}

	// Secrets are references: put the admin DSN in a file.
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dbURL), 0o600); err != nil {
		t.Fatal(err)
	}
	driver := postgres.New()
	connection, err := driver.ParseConnection(section("dsn: file:" + dsnFile))
	if err != nil {
		t.Fatal(err)
	}
	role, _, err := driver.ParseRole(section(`grants: [{privileges: [SELECT], schema: public, tables: ["*"]}]`))
	if err != nil {
		t.Fatal(err)
	}

	plugintest.Run(t, plugintest.Harness{
		Driver:     driver,
		Connection: connection,
		Role:       role,
		Login: func(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
			conn, err := pgx.Connect(ctx, c.URI.Reveal())
			if err != nil {
				return nil, err
			}
			return readOnlySession{conn}, nil
		},
	})
}

// section decodes YAML strictly, as the broker decodes configuration.
func section(src string) plugins.Decoder {
	return func(v any) error {
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		return dec.Decode(v)
	}
}

// readOnlySession is a login as a user that may read items, not write it.
type readOnlySession struct{ conn *pgx.Conn }

func (s readOnlySession) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

func (s readOnlySession) CheckGrants(ctx context.Context) error {
	if _, err := s.conn.Exec(ctx, "SELECT * FROM items"); err != nil {
		return err
	}
	if _, err := s.conn.Exec(ctx, "INSERT INTO items VALUES (1)"); err == nil {
		return errors.New("a read-only user could INSERT")
	}
	return nil
}

func (s readOnlySession) Close() error { return s.conn.Close(context.Background()) }

// A backend proves itself by calling Run from its tests with a Harness for
// the real service; this file shows a complete one, for PostgreSQL.
func Example() {
	// In the backend's package:
	//
	//	func TestConformance(t *testing.T) { testConformance(t) }
	_ = testConformance
}
