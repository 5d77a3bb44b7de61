package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/plugins"
)

const (
	// devStorePlugin is the plugin of demo-pg, the demo backend on the
	// PostgreSQL that holds the dev store: dev needs that server anyway, so
	// its own demo (two roles on a demo database) comes first, and the
	// driver's declared demo is not added again.
	devStorePlugin = "postgres"
	devIssuer      = "https://credbroker.dev.invalid"
	devSubject     = "dev-user"
	devStoreDB     = "credbroker_dev"
	devDemoDB      = "credbroker_demo"
	defaultDevDSN  = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

func newDevCmd() *cobra.Command {
	var tokenOut, listen, metricsListen, dir string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a throwaway broker with a dev issuer and demo PostgreSQL roles",
		Long: `Run a broker for trying credbroker out on one machine. It uses the PostgreSQL
at $CREDBROKER_DATABASE_URL (default: the local one as user postgres), creates
its own store database and a demo database with two tables, makes a throwaway
token issuer, writes a dev token and prints what to type next. Nothing it makes
is meant for production. When it stops (Ctrl-C, SIGTERM) it revokes every
lease it issued, so no backend user outlives the session.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd, dir, tokenOut, listen, metricsListen)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".credbroker", "where the dev config, keys and token are written")
	cmd.Flags().StringVar(&tokenOut, "token-out", "", "where to write the dev token (default DIR/dev-token)")
	cmd.Flags().StringVar(&listen, "listen", broker.DefaultListen, "address to listen on (loopback)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "127.0.0.1:0", "address of the Prometheus /metrics listener (loopback; port 0 picks a free one)")
	return cmd
}

func runDev(cmd *cobra.Command, dir, tokenOut, listen, metricsListen string) error {
	ctx := cmd.Context()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	adminDSN := os.Getenv("CREDBROKER_DATABASE_URL")
	if adminDSN == "" {
		adminDSN = defaultDevDSN
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if tokenOut == "" {
		tokenOut = filepath.Join(dir, "dev-token")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	storeDSN, demoDSN, err := prepareDevDatabases(ctx, adminDSN)
	if err != nil {
		return err
	}
	key, err := devKey(dir)
	if err != nil {
		return err
	}
	jwks, err := authn.JWKSJSON(key)
	if err != nil {
		return err
	}
	jwksPath := filepath.Join(dir, "dev-jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		return err
	}
	now := time.Now()
	token, err := key.Sign(jwt.MapClaims{
		"iss": devIssuer, "sub": devSubject, "aud": "credbroker",
		"iat": now.Unix(), "exp": now.Add(12 * time.Hour).Unix(),
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(tokenOut, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write dev token: %w", err)
	}

	// The dev config goes through the same parser as any other, with its
	// secrets as env: references like a real one.
	os.Setenv("CREDBROKER_DEV_STORE_DSN", storeDSN)
	os.Setenv("CREDBROKER_DEV_DEMO_DSN", demoDSN)
	extra := devBackends(ctx, []string{devStorePlugin}, func(msg string) { log.Info(msg) })
	data := devConfigData{Listen: listen, MetricsListen: metricsListen, Issuer: devIssuer, JWKS: jwksPath, Subject: devSubject, StorePlugin: devStorePlugin}
	var tries []string
	for _, b := range extra {
		data.Backends += b.backendYAML()
		data.Roles += b.roleYAML()
		data.RoleNames += ", " + b.name()
		if b.demo.Try != "" {
			tries = append(tries, "  "+b.demo.Try)
		}
	}
	var buf strings.Builder
	if err := devConfig.Execute(&buf, data); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "dev.yaml")
	if err := os.WriteFile(cfgPath, []byte(buf.String()), 0o600); err != nil {
		return err
	}
	// The dev config is read as serve reads one, and served by the same
	// loop: SIGHUP re-reads dev.yaml.
	cfg, err := broker.LoadConfig(cfgPath, drivers)
	if err != nil {
		return fmt.Errorf("dev config %s: %w", cfgPath, err)
	}
	for _, w := range cfg.Warnings {
		log.Warn("config", slog.String("warning", w))
	}
	more := ""
	if len(tries) > 0 {
		more = "\nMore demo backends answered on this machine:\n\n" + strings.Join(tries, "\n") + "\n"
	}
	return serve(ctx, cfg, log, cfgPath, serveHooks{
		ready: func(api, metrics net.Addr) {
			metricsAddr := "(none: --metrics-listen is empty)"
			if metrics != nil {
				metricsAddr = metrics.String()
			}
			fmt.Fprintf(cmd.OutOrStdout(), devBanner, api.String(), cfgPath, tokenOut, api.String(), more, metricsAddr)
		},
		stopped: func(ctx context.Context, srv *broker.Server) {
			revokeDevLeases(ctx, srv, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	})
}

// devRevokeTimeout bounds the revokes of `credbroker dev` as it stops.
const devRevokeTimeout = 30 * time.Second

// revokeDevLeases revokes every lease this dev session issued and says how
// many on out, beside the banner (problems on errOut): a Redis, MySQL or
// RabbitMQ user made for a throwaway broker has no expiry of its own on the
// backend, so it must not outlive the session. Only this session's leases:
// another credbroker dev may share the store.
func revokeDevLeases(ctx context.Context, srv *broker.Server, out, errOut io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, devRevokeTimeout)
	defer cancel()
	res, err := srv.RevokeIssued(ctx, "credbroker dev stopped", "credbroker-dev")
	fmt.Fprintf(out, "credbroker dev: revoked %d %s issued during this session\n", res.Revoked, plural(res.Revoked, "lease", "leases"))
	if res.Retrying > 0 {
		fmt.Fprintf(errOut, "credbroker dev: %d %s could not be revoked now (a backend did not answer); the next credbroker dev on this store retries them\n",
			res.Retrying, plural(res.Retrying, "lease", "leases"))
	}
	if err != nil {
		fmt.Fprintf(errOut, "credbroker dev: stopped revoking: %v; the reaper of the next credbroker dev on this store revokes what is left once it expires\n", plugins.Sanitize(err))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// devKey returns the dev issuer's signing key, made once and kept in dir so
// tokens from an earlier run stay valid.
func devKey(dir string) (authn.SigningKey, error) {
	path := filepath.Join(dir, "dev-signing-key")
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || len(seed) != ed25519.SeedSize {
		seed = make([]byte, ed25519.SeedSize)
		_, _ = rand.Read(seed)
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			return authn.SigningKey{}, err
		}
	} else if err != nil {
		return authn.SigningKey{}, err
	}
	return authn.SigningKey{KID: "dev-1", Key: ed25519.NewKeyFromSeed(seed)}, nil
}

// prepareDevDatabases creates the store database and the demo database with
// its tables and group roles, and returns DSNs for both.
func prepareDevDatabases(ctx context.Context, adminDSN string) (storeDSN, demoDSN string, err error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminDSN)
	if err != nil {
		return "", "", fmt.Errorf(`cannot reach PostgreSQL at %s: %v
credbroker dev needs a PostgreSQL it can create databases and roles in. Start the
local one (pg_ctlcluster <version> main start) or point at another:
  CREDBROKER_DATABASE_URL=postgres://USER@HOST:5432/postgres credbroker dev`, redactURL(adminDSN), pgconnMessage(err))
	}
	defer conn.Close(ctx)
	for _, db := range []string{devStoreDB, devDemoDB} {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
			return "", "", err
		}
		if !exists {
			if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
				return "", "", fmt.Errorf("create database %s: %w", db, err)
			}
		}
	}
	storeDSN, err = withDatabase(adminDSN, devStoreDB)
	if err != nil {
		return "", "", err
	}
	demoDSN, err = withDatabase(adminDSN, devDemoDB)
	if err != nil {
		return "", "", err
	}
	demo, err := pgx.Connect(ctx, demoDSN)
	if err != nil {
		return "", "", err
	}
	defer demo.Close(ctx)
	_, err = demo.Exec(ctx, demoSchema)
	if err != nil {
		return "", "", fmt.Errorf("set up demo database: %w", err)
	}
	return storeDSN, demoDSN, nil
}

func pgconnMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}

// withDatabase returns dsn (a URL) pointing at database db.
func withDatabase(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("CREDBROKER_DATABASE_URL must be a postgres:// URL")
	}
	u.Path = "/" + db
	return u.String(), nil
}

func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable DSN)"
	}
	return u.Redacted()
}

const demoSchema = `
CREATE TABLE IF NOT EXISTS customers (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer_id int REFERENCES customers, item text NOT NULL, qty int NOT NULL);
INSERT INTO customers (name) SELECT v FROM unnest(ARRAY['Ada','Grace','Linus']) v WHERE NOT EXISTS (SELECT 1 FROM customers);
INSERT INTO orders (customer_id, item, qty) SELECT 1, 'keyboard', 2 WHERE NOT EXISTS (SELECT 1 FROM orders);
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_read') THEN CREATE ROLE demo_read NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_write') THEN CREATE ROLE demo_write NOLOGIN; END IF;
END $$;
GRANT USAGE ON SCHEMA public TO demo_read, demo_write;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO demo_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO demo_write;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO demo_write;
`

// devConfigData fills devConfig; the optional backends add YAML list items.
type devConfigData struct {
	Listen, MetricsListen      string
	Issuer, JWKS, Subject      string
	StorePlugin                string
	Backends, Roles, RoleNames string
}

var devConfig = template.Must(template.New("dev").Parse(`# Written by credbroker dev. Secrets are env: references, as in production.
listen: {{.Listen}}
metrics_listen: {{.MetricsListen}}
store:
  dsn: env:CREDBROKER_DEV_STORE_DSN
reaper: {interval: 1s, pending_grace: 30s}
issuers:
  - name: dev
    issuer: {{.Issuer}}
    audiences: [credbroker]
    jwks_file: {{.JWKS}}
    algorithms: [EdDSA]
backends:
  - name: demo-pg
    plugin: {{.StorePlugin}}
    environment: dev
    owner: you
    connection: {dsn: env:CREDBROKER_DEV_DEMO_DSN}
{{.Backends}}roles:
  - name: demo-readonly
    backend: demo-pg
    owner: you
    default_ttl: 15m
    max_ttl: 1h
    postgres:
      member_of: [demo_read]
  - name: demo-readwrite
    backend: demo-pg
    owner: you
    default_ttl: 5m
    max_ttl: 30m
    postgres:
      member_of: [demo_write]
{{.Roles}}policies:
  - name: dev-user
    issuer: dev
    subject: {{.Subject}}
    roles: [demo-readonly, demo-readwrite{{.RoleNames}}]
    admin: true
`))

const devBanner = `
credbroker dev is running on http://%s
  config:  %s
  token:   %s
  metrics: http://%[6]s/metrics (loopback only)

In another terminal, try:

  export CREDBROKER_ADDR=http://%[4]s CREDBROKER_TOKEN_FILE=%[3]s
  ./bin/credbroker roles
  ./bin/credbroker creds demo-readonly      # a table for you; -o env for eval
  eval "$(./bin/credbroker creds demo-readonly -o env)"
  psql -c 'SELECT * FROM orders'            # works
  psql -c "INSERT INTO orders (item, qty) VALUES ('x', 1)"   # permission denied
  ./bin/credbroker lease list --state active
  ./bin/credbroker lease revoke "$CREDBROKER_LEASE_ID"
  psql -c 'SELECT 1'                        # the login is gone
  ./bin/credbroker connect demo-readonly    # psql with a login revoked when you quit
%[5]s
Press Ctrl-C to stop: what this broker issued is revoked first.
`
