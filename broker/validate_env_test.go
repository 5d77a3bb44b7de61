package broker

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mqtt"
	"github.com/credbroker/credbroker/plugins/postgres"
	"github.com/credbroker/credbroker/plugins/rabbitmq"
	"github.com/credbroker/credbroker/plugins/redis"
)

var envDrivers = []plugins.Driver{postgres.New(), redis.New(), rabbitmq.New(), mqtt.New()}

// envConfig has two environments kept apart as they should be: no errors,
// no warnings. The cases of TestEnvironmentRules each break one rule.
const envConfig = `
store: {dsn: env:CREDBROKER_DATABASE_URL}
issuers:
  - {name: k8s-prod, issuer: https://k8s.prod.example, audiences: [credbroker], jwks_file: /etc/credbroker/prod.jwks}
  - {name: ci-dev, issuer: https://ci.example, audiences: [credbroker], jwks_file: /etc/credbroker/ci.jwks, environments: [dev]}
backends:
  - {name: orders-pg, plugin: postgres, environment: prod, owner: team-orders, connection: {dsn: env:ORDERS_PG_ADMIN_DSN}}
  - {name: orders-pg-dev, plugin: postgres, environment: dev, owner: team-orders, connection: {dsn: env:ORDERS_PG_DEV_ADMIN_DSN}}
  - {name: cache, plugin: redis, environment: prod, owner: team-cache, connection: {addr: "redis.prod.example:6379", username: admin, password: env:CACHE_ADMIN_PASSWORD}}
  - {name: cache-dev, plugin: redis, environment: dev, owner: team-cache, connection: {addr: "redis.dev.example:6379", username: admin, password: env:CACHE_DEV_ADMIN_PASSWORD}}
roles:
  - {name: orders-read, backend: orders-pg, owner: team-orders, default_ttl: 15m, max_ttl: 1h, postgres: {member_of: [orders_read]}}
  - {name: orders-write, backend: orders-pg, owner: team-orders, default_ttl: 5m, max_ttl: 30m, postgres: {member_of: [orders_write]}}
  - {name: orders-read-dev, backend: orders-pg-dev, owner: team-orders, default_ttl: 1h, max_ttl: 8h, postgres: {member_of: [orders_read]}}
  - {name: cache-read, backend: cache, owner: team-cache, default_ttl: 15m, max_ttl: 1h, redis: {rules: ["~orders:*", "+@read"]}}
policies:
  - {name: orders-api, issuer: k8s-prod, subject: "system:serviceaccount:orders:api", roles: [orders-read, cache-read], break_glass_roles: [orders-write]}
  - {name: ci, issuer: ci-dev, subject: "repo:org/orders:*", roles: [orders-read-dev]}
checks: {max_backends_per_secret: 3, max_ttl: {prod: 1h}}
`

func TestEnvironmentRulesValid(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(envConfig), envDrivers)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings for a config that keeps its environments apart: %q", cfg.Warnings)
	}
}

func TestEnvironmentRulesDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(strings.Replace(envConfig, "checks: {max_backends_per_secret: 3, max_ttl: {prod: 1h}}\n", "", 1)), envDrivers)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Checks.MaxBackendsPerSecret != DefaultMaxBackendsPerSecret || cfg.Checks.MaxTTL != nil {
		t.Errorf("checks = %+v, want max_backends_per_secret %d and no ceiling", cfg.Checks, DefaultMaxBackendsPerSecret)
	}
}

// replace replaces old in s, and fails the test when s has no old: a case
// that edits nothing would pass for the wrong reason.
func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("the config has no %q", old)
	}
	return strings.Replace(s, old, new, 1)
}

func TestEnvironmentRulesErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		edit func(t *testing.T, s string) string
		want []string // each a line of the error, from its start
	}{
		"MissingOwner": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "environment: dev, owner: team-orders, ", "environment: dev, ")
			},
			want: []string{"backends[1].owner: required: the team that answers for this backend"},
		},
		"MissingEnvironment": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "environment: dev, owner: team-cache, ", "owner: team-cache, ")
			},
			want: []string{"backends[3].environment: required: the environment this backend belongs to"},
		},
		"SecretSharedAcrossEnvironments": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "dsn: env:ORDERS_PG_DEV_ADMIN_DSN", "dsn: env:ORDERS_PG_ADMIN_DSN")
			},
			want: []string{"backends[1].connection.dsn: env:ORDERS_PG_ADMIN_DSN is also the admin secret of backends[0] (orders-pg, environment prod), but this backend is in environment dev: environments must not share credentials"},
		},
		"SecretSharedAcrossPlugins": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "password: env:CACHE_DEV_ADMIN_PASSWORD", "password: env:ORDERS_PG_ADMIN_DSN")
			},
			want: []string{"backends[3].connection.password: env:ORDERS_PG_ADMIN_DSN is also the admin secret of backends[0] (orders-pg, environment prod)"},
		},
		"FileSecretShared": {
			edit: func(t *testing.T, s string) string {
				s = replace(t, s, "dsn: env:ORDERS_PG_ADMIN_DSN", "dsn: file:/run/secrets/pg")
				return replace(t, s, "dsn: env:ORDERS_PG_DEV_ADMIN_DSN", "dsn: file:/run/secrets/pg")
			},
			want: []string{"backends[1].connection.dsn: file:/run/secrets/pg is also the admin secret of backends[0]"},
		},
		"AdminSharedAcrossEnvironments": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, `addr: "redis.dev.example:6379"`, `addr: "Redis.Prod.example:6379"`)
			},
			want: []string{`backends[3].connection: logs in to redis.prod.example:6379 as admin user "admin", as backends[2] (cache, environment prod) does, but this backend is in environment dev`},
		},
		"DefaultAdminSharedAcrossEnvironments": {
			edit: func(t *testing.T, s string) string {
				s = replace(t, s, `addr: "redis.dev.example:6379", username: admin,`, `addrs: ["redis.dev.example:6379", "redis.prod.example:6379"],`)
				return replace(t, s, `username: admin, password: env:CACHE_ADMIN_PASSWORD`, `password: env:CACHE_ADMIN_PASSWORD`)
			},
			want: []string{`backends[3].connection: logs in to redis.prod.example:6379 as admin user "default", as backends[2] (cache, environment prod) does`},
		},
		"RabbitMQAdminShared": {
			// The same server, once with its default port written out.
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "roles:\n", `  - {name: mq, plugin: rabbitmq, environment: prod, owner: team-mq, connection: {management_url: "http://mq.example", username: admin, password: env:MQ_PASSWORD, amqp_url: "amqp://mq.example"}}
  - {name: mq-dev, plugin: rabbitmq, environment: dev, owner: team-mq, connection: {management_url: "http://MQ.example:80/", username: admin, password: env:MQ_DEV_PASSWORD, amqp_url: "amqp://mq.example"}}
roles:
`)
			},
			want: []string{`backends[5].connection: logs in to mq.example:80 as admin user "admin", as backends[4] (mq, environment prod) does`},
		},
		"MQTTAdminShared": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "roles:\n", `  - {name: telemetry, plugin: mqtt, environment: prod, owner: team-iot, connection: {url: "tcp://mqtt.example", username: dynsec-admin, password: env:MQTT_PASSWORD}}
  - {name: telemetry-dev, plugin: mqtt, environment: dev, owner: team-iot, connection: {url: "mqtt://mqtt.example:1883", username: dynsec-admin, password: env:MQTT_DEV_PASSWORD}}
roles:
`)
			},
			want: []string{`backends[5].connection: logs in to mqtt.example:1883 as admin user "dynsec-admin", as backends[4] (telemetry, environment prod) does`},
		},
		"IssuerGrantedAnotherEnvironment": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "roles: [orders-read-dev]}", "roles: [orders-read-dev, cache-read], break_glass_roles: [orders-write]}")
			},
			want: []string{
				"policies[1].roles[1]: role cache-read is in environment prod, but issuer ci-dev may only be granted roles of dev (issuers[1].environments)",
				"policies[1].break_glass_roles[0]: role orders-write is in environment prod, but issuer ci-dev may only be granted roles of dev",
			},
		},
		"MaxTTLAboveCeiling": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "default_ttl: 5m, max_ttl: 30m", "default_ttl: 5m, max_ttl: 2h")
			},
			want: []string{"roles[1].max_ttl: 2h0m0s is longer than 1h0m0s, the ceiling of environment prod (checks.max_ttl.prod; backend orders-pg)"},
		},
		"BadChecks": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "checks: {max_backends_per_secret: 3, max_ttl: {prod: 1h}}", "checks: {max_backends_per_secret: -1, max_ttl: {prod: 0s, dev: soon}}")
			},
			want: []string{
				"checks.max_backends_per_secret: -1: must be at least 1",
				"checks.max_ttl.prod: 0s: write the longest max_ttl a role of environment prod may have",
				`checks.max_ttl.dev: "soon" is not a duration`,
			},
		},
		"BadIssuerEnvironments": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "environments: [dev]", `environments: [dev, "", dev]`)
			},
			want: []string{"issuers[1]: environments[1]: is empty", `issuers[1]: environments[2]: "dev" is listed twice`},
		},
		"AllAtOnce": {
			edit: func(t *testing.T, s string) string {
				s = replace(t, s, "environment: dev, owner: team-orders, ", "environment: dev, ")
				s = replace(t, s, "dsn: env:ORDERS_PG_DEV_ADMIN_DSN", "dsn: env:ORDERS_PG_ADMIN_DSN")
				s = replace(t, s, `addr: "redis.dev.example:6379"`, `addr: "redis.prod.example:6379"`)
				s = replace(t, s, "roles: [orders-read-dev]}", "roles: [orders-read-dev, orders-read]}")
				s = replace(t, s, "default_ttl: 5m, max_ttl: 30m", "default_ttl: 5m, max_ttl: 2h")
				return replace(t, s, "max_ttl: {prod: 1h}", "max_ttl: {prod: 1h, staging: -1h}")
			},
			want: []string{
				"invalid config (6 problems)",
				"backends[1].owner: required",
				"backends[1].connection.dsn: env:ORDERS_PG_ADMIN_DSN is also the admin secret of backends[0]",
				"backends[3].connection: logs in to redis.prod.example:6379",
				"policies[1].roles[1]: role orders-read is in environment prod",
				"roles[1].max_ttl: 2h0m0s is longer than 1h0m0s",
				"checks.max_ttl.staging: -1h0m0s",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(tc.edit(t, envConfig)), envDrivers)
			if err == nil {
				t.Fatal("ParseConfig accepted a config that breaks a rule")
			}
			if _, ok := errors.AsType[*ConfigError](err); !ok {
				t.Fatalf("error is %T, want *ConfigError", err)
			}
			lines := strings.Split(err.Error(), "\n")
			for i := range lines {
				lines[i] = strings.TrimSpace(lines[i])
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
					t.Errorf("no line starts with %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestEnvironmentRulesPass(t *testing.T) {
	t.Parallel()
	// What looks close to a shared credential but is not one.
	tests := map[string]func(t *testing.T, s string) string{
		// One admin per environment is the point; one secret for two
		// backends of one environment is not shared across environments.
		"SecretSharedWithinEnvironment": func(t *testing.T, s string) string {
			return replace(t, s, "password: env:CACHE_ADMIN_PASSWORD", "password: env:ORDERS_PG_ADMIN_DSN")
		},
		"SameServerOtherAdmin": func(t *testing.T, s string) string {
			s = replace(t, s, `addr: "redis.dev.example:6379", username: admin`, `addr: "redis.prod.example:6379", username: dev-admin`)
			return s
		},
		"SameHostOtherPort": func(t *testing.T, s string) string {
			return replace(t, s, `addr: "redis.dev.example:6379"`, `addr: "redis.prod.example:6380"`)
		},
		"CeilingOfAnotherEnvironment": func(t *testing.T, s string) string {
			// orders-read-dev's 8h is over prod's ceiling, but it is dev's.
			return replace(t, s, "max_ttl: {prod: 1h}", "max_ttl: {prod: 1h, dev: 8h}")
		},
		"IssuerWithoutEnvironments": func(t *testing.T, s string) string {
			s = replace(t, s, ", environments: [dev]", "")
			return replace(t, s, "roles: [orders-read-dev]}", "roles: [orders-read-dev]}\n  - {name: ci-prod, issuer: ci-dev, subject: \"repo:org/orders:ref:refs/heads/main\", roles: [orders-read]}")
		},
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig([]byte(edit(t, envConfig)), envDrivers)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if len(cfg.Warnings) > 0 {
				t.Errorf("warnings: %q", cfg.Warnings)
			}
		})
	}
}

func TestEnvironmentRulesWarnings(t *testing.T) {
	t.Parallel()
	// fourDev adds backends that share one admin secret in dev.
	fourDev := func(t *testing.T, s string, n int) string {
		var b strings.Builder
		for _, name := range []string{"a", "b", "c", "d"}[:n] {
			b.WriteString("  - {name: dev-" + name + ", plugin: postgres, environment: dev, owner: team-dev, connection: {dsn: env:DEV_ADMIN_DSN}}\n")
		}
		return replace(t, s, "roles:\n", b.String()+"roles:\n")
	}
	tests := map[string]struct {
		edit func(t *testing.T, s string) string
		want []string // each a warning, from its start; none: no warning
	}{
		"MasterSecret": {
			edit: func(t *testing.T, s string) string { return fourDev(t, s, 4) },
			want: []string{"backends[4].connection.dsn: env:DEV_ADMIN_DSN is the admin secret of 4 backends (dev-a, dev-b, dev-c, dev-d), more than checks.max_backends_per_secret (3)"},
		},
		"MasterSecretDefaultThreshold": {
			edit: func(t *testing.T, s string) string {
				return replace(t, fourDev(t, s, 4), "max_backends_per_secret: 3, ", "")
			},
			want: []string{"backends[4].connection.dsn: env:DEV_ADMIN_DSN is the admin secret of 4 backends"},
		},
		"AtThreshold": {
			edit: func(t *testing.T, s string) string { return fourDev(t, s, 3) },
		},
		"RaisedThreshold": {
			edit: func(t *testing.T, s string) string {
				return replace(t, fourDev(t, s, 4), "max_backends_per_secret: 3", "max_backends_per_secret: 4")
			},
		},
		"PolicyAcrossEnvironments": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "roles: [orders-read, cache-read]", "roles: [orders-read, cache-read, orders-read-dev]")
			},
			want: []string{"policies[0]: grants roles of more than one environment (dev: orders-read-dev; prod: orders-read, cache-read, orders-write): write one policy per environment"},
		},
		"CeilingOfNoEnvironment": {
			edit: func(t *testing.T, s string) string {
				return replace(t, s, "max_ttl: {prod: 1h}", "max_ttl: {prod: 1h, prdo: 1h}")
			},
			want: []string{"checks.max_ttl.prdo: no backend has environment: prdo"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig([]byte(tc.edit(t, envConfig)), envDrivers)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if len(cfg.Warnings) != len(tc.want) {
				t.Errorf("got %d warnings, want %d: %q", len(cfg.Warnings), len(tc.want), cfg.Warnings)
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(cfg.Warnings, func(l string) bool { return strings.HasPrefix(l, w) }) {
					t.Errorf("no warning starts with %q: %q", w, cfg.Warnings)
				}
			}
		})
	}
}
