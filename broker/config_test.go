package broker

import (
	"errors"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
)

var testDrivers = []plugins.Driver{postgres.New()}

// validConfig is DESIGN.md §3's example, with jwks_file so it needs no network.
const validConfig = `
listen: 127.0.0.1:8420
store:
  dsn: env:CREDBROKER_DATABASE_URL
reaper: {interval: 5s, pending_grace: 2m, sweep_interval: 10m}
issuers:
  - name: k8s-prod
    issuer: https://kubernetes.default.svc
    audiences: [credbroker]
    jwks_file: /etc/credbroker/jwks.json
    algorithms: [RS256, ES256]
  - name: corp-oidc
    issuer: https://login.example.com
    audiences: [credbroker]
    jwks_url: https://login.example.com/keys
backends:
  - name: orders-pg
    plugin: postgres
    environment: prod
    owner: team-orders
    connection: {dsn: env:ORDERS_PG_ADMIN_DSN}
roles:
  - name: orders-readonly
    backend: orders-pg
    owner: team-orders
    default_ttl: 15m
    max_ttl: 1h
    postgres:
      member_of: [orders_read]
  - name: orders-report
    backend: orders-pg
    owner: team-orders
    default_ttl: 15m
    max_ttl: 1h
    postgres:
      grants:
        - {privileges: [SELECT], schema: public, tables: ["*"]}
policies:
  - name: orders-api
    issuer: k8s-prod
    subject: system:serviceaccount:orders:api
    claims: {}
    roles: [orders-readonly]
  - name: sre
    issuer: corp-oidc
    claims: {groups: sre}
    admin: true
`

func TestParseConfigValid(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(validConfig), testDrivers)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if got := cfg.Reaper.PendingGrace.String(); got != "2m0s" {
		t.Errorf("pending_grace = %s", got)
	}
	if r, ok := cfg.Role("orders-readonly"); !ok || r.spec == nil || !*r.Renewable {
		t.Errorf("role orders-readonly not parsed: %+v", r)
	}
	if len(cfg.Warnings) != 1 || !strings.HasPrefix(cfg.Warnings[0], "roles[1].postgres") {
		t.Errorf("want one warning about roles[1]'s explicit grants, got %q", cfg.Warnings)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		edit func(string) string
		want []string // substrings that must each appear in the error
	}{
		"UnknownTopLevelKey": {
			edit: func(s string) string { return s + "lisen: x\n" },
			want: []string{"lisen: unknown key"},
		},
		"UnknownNestedKey": {
			edit: func(s string) string {
				return strings.Replace(s, "default_ttl: 15m\n    max_ttl: 1h\n    postgres:\n      member_of", "defualt_ttl: 15m\n    max_ttl: 1h\n    postgres:\n      member_of", 1)
			},
			want: []string{"roles[0].defualt_ttl: unknown key", "roles[0].default_ttl: required"},
		},
		"UnknownPluginKey": {
			edit: func(s string) string { return strings.Replace(s, "member_of:", "memberof:", 1) },
			want: []string{"roles[0].postgres.memberof: unknown key"},
		},
		"WrongPluginSection": {
			edit: func(s string) string {
				return strings.Replace(s, "    postgres:\n      member_of", "    redis:\n      member_of", 1)
			},
			want: []string{"roles[0].redis: unknown key", "roles[0]: missing the postgres: section"},
		},
		"MissingMaxTTL": {
			edit: func(s string) string { return strings.Replace(s, "    max_ttl: 1h\n", "", 1) },
			want: []string{"roles[0].max_ttl: required"},
		},
		"DefaultAboveMax": {
			edit: func(s string) string { return strings.Replace(s, "default_ttl: 15m", "default_ttl: 2h", 1) },
			want: []string{"roles[0].default_ttl: 2h0m0s is longer than max_ttl 1h0m0s"},
		},
		"BadDuration": {
			edit: func(s string) string { return strings.Replace(s, "max_ttl: 1h", "max_ttl: an hour", 1) },
			want: []string{`roles[0].max_ttl: "an hour" is not a duration`},
		},
		"RoleToUnknownBackend": {
			edit: func(s string) string { return strings.Replace(s, "backend: orders-pg", "backend: orders-mysql", 1) },
			want: []string{`roles[0].backend: unknown backend "orders-mysql"`},
		},
		"PolicyToUnknownIssuer": {
			edit: func(s string) string {
				return strings.Replace(s, "issuer: k8s-prod\n    subject", "issuer: k8s-staging\n    subject", 1)
			},
			want: []string{`policies[0].issuer: unknown issuer "k8s-staging"`},
		},
		"BreakGlassToUnknownRole": {
			edit: func(s string) string {
				return s + "  - {name: on-call, issuer: k8s-prod, subject: x, break_glass_roles: [nope]}\n"
			},
			want: []string{`policies[2].break_glass_roles[0]: unknown role "nope"`},
		},
		"PolicyToUnknownRole": {
			edit: func(s string) string {
				return strings.Replace(s, "roles: [orders-readonly]", "roles: [orders-admin]", 1)
			},
			want: []string{`policies[0].roles[0]: unknown role "orders-admin"`},
		},
		"InlineStoreSecret": {
			edit: func(s string) string {
				return strings.Replace(s, "dsn: env:CREDBROKER_DATABASE_URL", "dsn: postgres://admin:hunter2@db/credbroker", 1)
			},
			want: []string{"store.dsn: secrets must not be written inline"},
		},
		"InlineBackendSecret": {
			edit: func(s string) string {
				return strings.Replace(s, "dsn: env:ORDERS_PG_ADMIN_DSN", "dsn: postgres://admin:hunter2@db/orders", 1)
			},
			want: []string{"backends[0].connection.dsn: secrets must not be written inline"},
		},
		"UnknownPlugin": {
			edit: func(s string) string { return strings.Replace(s, "plugin: postgres", "plugin: oracle", 1) },
			want: []string{`backends[0].plugin: unknown plugin "oracle"`},
		},
		"PublicListenWithoutTLS": {
			edit: func(s string) string { return strings.Replace(s, "listen: 127.0.0.1:8420", "listen: 0.0.0.0:8420", 1) },
			want: []string{"listen: 0.0.0.0:8420 is not a loopback address"},
		},
		"HMACAlgorithm": {
			edit: func(s string) string { return strings.Replace(s, "[RS256, ES256]", "[HS256]", 1) },
			want: []string{"issuers[0]"},
		},
		"ManyProblemsAtOnce": {
			edit: func(s string) string {
				s = strings.Replace(s, "default_ttl: 15m", "default_ttl: 2h", 1)
				s = strings.Replace(s, "roles: [orders-readonly]", "roles: [nope]", 1)
				return strings.Replace(s, "dsn: env:CREDBROKER_DATABASE_URL", "dsn: inline", 1)
			},
			want: []string{"roles[0].default_ttl", "policies[0].roles[0]", "store.dsn", "3 problems"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(tc.edit(validConfig)), testDrivers)
			if err == nil {
				t.Fatal("ParseConfig accepted a bad config")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *ConfigError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error reveals an inline secret:\n%v", err)
			}
		})
	}
}

func TestParseConfigNotYAML(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{"Empty": "", "Garbage": "{: [", "List": "- a\n- b\n"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := ParseConfig([]byte(in), testDrivers); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(validConfig)
	f.Add("listen: [\n")
	f.Add("roles: [{name: x, postgres: {grants: [{privileges: [1]}]}}]")
	f.Fuzz(func(t *testing.T, in string) {
		cfg, err := ParseConfig([]byte(in), testDrivers)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}
