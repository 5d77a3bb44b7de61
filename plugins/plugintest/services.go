package plugintest

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// Environment variables the service discovery reads.
const (
	// PostgresURLEnv overrides where tests find PostgreSQL.
	PostgresURLEnv = "CREDBROKER_TEST_POSTGRES_URL"
	// RequireServicesEnv set to "1" turns a service that does not answer into
	// a test failure instead of a skip (set it in CI).
	RequireServicesEnv = "CREDBROKER_REQUIRE_SERVICES"
)

// DefaultPostgresURL is where tests look for PostgreSQL when
// CREDBROKER_TEST_POSTGRES_URL is not set: a local server with trust
// authentication.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// pingTimeout bounds one attempt to reach a service.
const pingTimeout = 5 * time.Second

// PostgresURL returns the URL of a PostgreSQL server for tests, with superuser
// rights: $CREDBROKER_TEST_POSTGRES_URL, else [DefaultPostgresURL]; see
// [ServiceURL] for what happens when it does not answer. Tests that create
// tables should do so in a database of their own from [NewTestDatabase].
func PostgresURL(t testing.TB) string {
	t.Helper()
	return ServiceURL(t, "postgres", PostgresURLEnv, DefaultPostgresURL, pingPostgres)
}

func pingPostgres(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// ServiceURL returns the URL of the service name for a test: $envVar, else
// defaultURL, if ping answers there. If it does not and
// CREDBROKER_REQUIRE_SERVICES=1, the test fails with a message saying how to
// start the service. Otherwise, if a Docker engine answers and plugintest
// knows an image for name ("postgres", "redis"), the service is started in a
// container, shared by the tests that ask at the same time and removed when
// the last of them ends; failing that, the test is skipped with the reason.
func ServiceURL(t testing.TB, name, envVar, defaultURL string, ping func(ctx context.Context, url string) error) string {
	t.Helper()
	u := cmp.Or(os.Getenv(envVar), defaultURL)
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	err := ping(ctx, u)
	cancel()
	if err == nil {
		return u
	}
	shown := plugins.SanitizeString(u)
	reason := plugins.SanitizeString(err.Error())
	if os.Getenv(RequireServicesEnv) == "1" {
		t.Fatalf("%s does not answer at %s: %s\n%s\n(%s=1 makes this a failure, not a skip.)",
			name, shown, reason, startHint(name, envVar), RequireServicesEnv)
	}
	started, dockerErr := startContainer(t, name, ping)
	if dockerErr == nil {
		return started
	}
	t.Skipf("%s does not answer at %s (%s) and no container was started: %v\n%s",
		name, shown, reason, dockerErr, startHint(name, envVar))
	return ""
}

// startHint says how to make a service available to the tests.
func startHint(name, envVar string) string {
	hint := fmt.Sprintf("Start %s locally, or set %s to where it runs", name, envVar)
	if c, ok := containers[name]; ok {
		port := strings.TrimSuffix(c.port, "/tcp")
		hint += ", or run: docker run -d --rm -p " + port + ":" + port
		for _, e := range c.env {
			hint += " -e " + e
		}
		hint += " " + c.image()
	}
	if name == "postgres" {
		hint += "\n(on Debian: pg_ctlcluster <version> main start)"
	}
	return hint + "."
}

// NewTestDatabase creates an empty database with a unique name on the server
// adminURL points at, drops it (WITH (FORCE), ending any session left in it)
// when the test ends, and returns adminURL pointing at it instead. adminURL
// needs the right to create databases.
func NewTestDatabase(t testing.TB, adminURL string) string {
	t.Helper()
	name := "cbtest_" + strings.ToLower(rand.Text()[:16])
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("NewTestDatabase: %v", err)
	}
	if err := adminExec(adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("NewTestDatabase: create database %s: %s", name, plugins.SanitizeString(err.Error()))
	}
	t.Cleanup(func() {
		err := adminExec(adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		if err != nil {
			t.Errorf("NewTestDatabase: drop database %s: %s", name, plugins.SanitizeString(err.Error()))
		}
	})
	return dbURL
}

// adminExec runs one statement on a fresh connection to url. It does not use
// the test's context, so it works in a Cleanup too.
func adminExec(url, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns the connection string dsn with its database replaced.
func withDatabase(dsn, database string) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		// keyword/value form: a later keyword wins.
		return dsn + " dbname=" + database, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // url.Error quotes the URL, password and all
		}
		return "", fmt.Errorf("parse the PostgreSQL URL: %w", err)
	}
	u.Path = "/" + database
	u.RawPath = ""
	return u.String(), nil
}
