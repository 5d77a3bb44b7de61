package rabbitmq_test

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins/rabbitmq"
)

func TestParseConnection(t *testing.T) {
	t.Parallel()
	const base = "management_url: http://127.0.0.1:15672\nusername: admin\npassword: env:MQ_PW\namqp_url: amqp://127.0.0.1:5672\n"
	tests := map[string]struct {
		yaml     string
		want     rabbitmq.Connection // compared without Password
		wantPass string
		wantErr  string
	}{
		"Minimal": {
			yaml: base, wantPass: "env:MQ_PW",
			want: rabbitmq.Connection{ManagementURL: "http://127.0.0.1:15672", Username: "admin", AMQPURL: "amqp://127.0.0.1:5672"},
		},
		"TrailingSlashAndPrefix": {
			yaml:     "management_url: https://mq.internal/rabbitmq/\nusername: admin\npassword: 'file:/run/mq'\namqp_url: amqps://mq.internal\ntls: {ca_file: /etc/ca.pem, server_name: mq}",
			wantPass: "file:/run/mq",
			want: rabbitmq.Connection{
				ManagementURL: "https://mq.internal/rabbitmq", Username: "admin", AMQPURL: "amqps://mq.internal",
				TLS: &rabbitmq.TLS{CAFile: "/etc/ca.pem", ServerName: "mq"},
			},
		},
		"AMQPURLSlash": {
			yaml: strings.Replace(base, "1:5672\n", "1:5672/\n", 1), wantPass: "env:MQ_PW",
			want: rabbitmq.Connection{ManagementURL: "http://127.0.0.1:15672", Username: "admin", AMQPURL: "amqp://127.0.0.1:5672/"},
		},
		"InlinePassword":     {yaml: strings.Replace(base, "env:MQ_PW", "hunter2", 1), wantErr: "inline"},
		"MissingPassword":    {yaml: strings.Replace(base, "password: env:MQ_PW\n", "", 1), wantErr: "password: required"},
		"MissingUsername":    {yaml: strings.Replace(base, "username: admin\n", "", 1), wantErr: "username: required"},
		"MissingManagement":  {yaml: strings.Replace(base, "management_url: http://127.0.0.1:15672\n", "", 1), wantErr: "management_url: required"},
		"MissingAMQP":        {yaml: strings.Replace(base, "amqp_url: amqp://127.0.0.1:5672\n", "", 1), wantErr: "amqp_url: required"},
		"ManagementScheme":   {yaml: strings.Replace(base, "http://", "amqp://", 1), wantErr: `management_url: scheme "amqp"`},
		"ManagementUserinfo": {yaml: strings.Replace(base, "http://", "http://guest:pw-in-url@", 1), wantErr: "must not hold credentials"},
		"ManagementQuery":    {yaml: strings.Replace(base, "15672\n", "15672?x=1\n", 1), wantErr: "query"},
		"AMQPScheme":         {yaml: strings.Replace(base, "amqp://", "http://", 1), wantErr: `amqp_url: scheme "http"`},
		"AMQPUserinfo":       {yaml: strings.Replace(base, "amqp://", "amqp://u:pw-in-url@", 1), wantErr: "amqp_url: must not hold credentials"},
		"AMQPVhost":          {yaml: strings.Replace(base, "1:5672\n", "1:5672/orders\n", 1), wantErr: "must not name a vhost"},
		"AMQPBadPort":        {yaml: strings.Replace(base, "1:5672\n", "1:99999\n", 1), wantErr: "not a TCP port"},
		"AMQPNoHost":         {yaml: strings.Replace(base, "amqp://127.0.0.1:5672", "amqp://", 1), wantErr: "amqp_url: no host"},
		"TLSWithoutTLS":      {yaml: base + "tls: {server_name: mq}", wantErr: "neither management_url"},
		"RelativeCAFile":     {yaml: strings.Replace(base, "http://", "https://", 1) + "tls: {ca_file: ca.pem}", wantErr: "tls.ca_file: ca.pem: the path must be absolute"},
		"UnknownKey":         {yaml: base + "vhost: orders", wantErr: "vhost"},
		"UnknownTLSKey":      {yaml: strings.Replace(base, "http://", "https://", 1) + "tls: {cafile: /ca.pem}", wantErr: "cafile"},
		"NotAMap":            {yaml: "[management_url]", wantErr: "cannot unmarshal"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := rabbitmq.Driver{}.ParseConnection(decoder(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConnection = %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw-in-url") {
					t.Errorf("the error quotes a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConnection: %v", err)
			}
			c := *got
			if c.Password.String() != tt.wantPass {
				t.Errorf("Password = %s, want %s", c.Password, tt.wantPass)
			}
			c.Password = tt.want.Password
			gotTLS, wantTLS := c.TLS, tt.want.TLS
			c.TLS, tt.want.TLS = nil, nil
			if c != tt.want {
				t.Errorf("ParseConnection = %+v, want %+v", c, tt.want)
			}
			if (gotTLS == nil) != (wantTLS == nil) || (gotTLS != nil && *gotTLS != *wantTLS) {
				t.Errorf("TLS = %+v, want %+v", gotTLS, wantTLS)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		yaml        string
		check       func(t *testing.T, r *rabbitmq.Role)
		wantWarning string
		wantErr     string
	}{
		"Minimal": {
			yaml: `vhosts: {orders: {configure: "", write: '^orders\.', read: '^orders\.'}}`,
			check: func(t *testing.T, r *rabbitmq.Role) {
				want := map[string]rabbitmq.Permissions{"orders": {Configure: "", Write: `^orders\.`, Read: `^orders\.`}}
				if !maps.Equal(r.Vhosts, want) {
					t.Errorf("Vhosts = %v, want %v", r.Vhosts, want)
				}
				if len(r.Tags) != 0 {
					t.Errorf("Tags = %q, want none (credbroker is added by Create)", r.Tags)
				}
			},
		},
		"Full": {
			yaml: `
vhosts:
  orders: {configure: '^orders\.', write: '^orders\.', read: '.*'}
  "/": {configure: "", write: "", read: '^shared$'}
topic_permissions:
  - {vhost: orders, exchange: orders.events, write: '^{username}\.', read: '.*'}
tags: [management, credbroker, management]
`,
			check: func(t *testing.T, r *rabbitmq.Role) {
				if len(r.Vhosts) != 2 || r.Vhosts["/"].Read != "^shared$" {
					t.Errorf("Vhosts = %v", r.Vhosts)
				}
				want := []rabbitmq.TopicPermission{{Vhost: "orders", Exchange: "orders.events", Write: `^{username}\.`, Read: ".*"}}
				if !slices.Equal(r.TopicPermissions, want) {
					t.Errorf("TopicPermissions = %v, want %v", r.TopicPermissions, want)
				}
				if !slices.Equal(r.Tags, []string{"management"}) {
					t.Errorf("Tags = %q, want [management]: duplicates and the marker dropped", r.Tags)
				}
			},
		},
		"Unanchored":  {yaml: `vhosts: {v: {configure: "", write: orders, read: ""}}`, wantWarning: `vhosts["v"].write: "orders" is not anchored`},
		"Monitoring":  {yaml: `{vhosts: {v: {configure: "", write: "", read: ""}}, tags: [management, monitoring]}`, wantErr: "tags[1]: monitoring is refused: it lets the user see every vhost's connections"},
		"Policymaker": {yaml: `{vhosts: {v: {configure: "", write: "", read: ""}}, tags: [PolicyMaker]}`, wantErr: "tags[0]: PolicyMaker is refused: it lets the user set policies"},
		"ConfigureAll": {
			yaml:    `vhosts: {v: {configure: ".*", write: "", read: ""}}`,
			wantErr: `vhosts["v"].configure: ".*" matches names starting with amq. such as amq.direct`,
		},
		"ConfigureUnanchored": {yaml: `vhosts: {v: {configure: 'orders\.', write: "", read: ""}}`, wantErr: `vhosts["v"].configure: "orders\\." matches names starting with amq.`},
		"ConfigureGen":        {yaml: `vhosts: {v: {configure: '^amq\.gen-.*', write: "", read: ""}}`, wantErr: "such as amq.gen-"},
		"ConfigureAlt":        {yaml: `vhosts: {v: {configure: '^(orders|amq)\..*', write: "", read: ""}}`, wantErr: "such as amq.direct"},
		"ConfigureCase":       {yaml: `vhosts: {v: {configure: '(?i)^AMQ\.', write: "", read: ""}}`, wantErr: "configure"},
		"ConfigureA":          {yaml: `vhosts: {v: {configure: '^a', write: "", read: ""}}`, wantErr: "configure"},
		"ConfigureAnchoredOK": {yaml: `vhosts: {v: {configure: '^(orders|payments)\.', write: "", read: ""}}`},
		"ConfigureAmqpOK":     {yaml: `vhosts: {v: {configure: '^amqp\.', write: ".*", read: ".*"}}`},
		"WriteAmqOK":          {yaml: `vhosts: {v: {configure: "", write: '^amq\.direct$', read: '^amq\.gen-'}}`},
		"NoVhosts":            {yaml: `tags: [management]`, wantErr: "vhosts: required"},
		"EmptyVhosts":         {yaml: `vhosts: {}`, wantErr: "vhosts: required"},
		"Empty":               {yaml: `{}`, wantErr: "vhosts: required"},
		"NullVhost":           {yaml: `vhosts: {orders: }`, wantErr: `vhosts["orders"]: required`},
		"BlankVhost":          {yaml: `vhosts: {" ": {configure: "", write: "", read: ""}}`, wantErr: "empty vhost name"},
		"MissingRead": {
			yaml:    `vhosts: {orders: {configure: "", write: ""}}`,
			wantErr: `vhosts["orders"].read: required (write "" to allow nothing)`,
		},
		"MissingAll": {
			yaml:    `vhosts: {orders: {}}`,
			wantErr: `vhosts["orders"].configure: required`,
		},
		"BadRegexp": {
			yaml:    `vhosts: {orders: {configure: "(", write: "", read: ""}}`,
			wantErr: `vhosts["orders"].configure: "(" is not a valid regular expression: missing closing )`,
		},
		"PCREOnly": {
			yaml:    `vhosts: {orders: {configure: "", write: '^(?!amq\.)', read: ""}}`,
			wantErr: `vhosts["orders"].write`,
		},
		"UnknownPermissionKey": {yaml: `vhosts: {orders: {configure: "", write: "", read: "", admin: ".*"}}`, wantErr: "admin"},
		"UnknownKey":           {yaml: "vhost: {orders: {configure: '', write: '', read: ''}}", wantErr: "vhost"},
		"TopicUnknownVhost": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{vhost: b, exchange: x, write: '', read: ''}]",
			wantErr: `topic_permissions[0].vhost: "b" is not one of the role's vhosts`,
		},
		"TopicNoVhost": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{exchange: x, write: '', read: ''}]",
			wantErr: "topic_permissions[0].vhost: required",
		},
		"TopicNoExchange": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{vhost: a, write: '', read: ''}]",
			wantErr: "topic_permissions[0].exchange: required",
		},
		"TopicNoWrite": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{vhost: a, exchange: x, read: ''}]",
			wantErr: "topic_permissions[0].write: required",
		},
		"TopicBadRegexp": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{vhost: a, exchange: x, write: '[', read: ''}]",
			wantErr: "topic_permissions[0].write",
		},
		"TopicTwice": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{vhost: a, exchange: x, write: '', read: ''}, {vhost: a, exchange: x, write: '.*', read: ''}]",
			wantErr: `topic_permissions[1]: a second entry for exchange "x"`,
		},
		"TopicUnknownKey": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{vhost: a, exchange: x, write: '', read: '', configure: ''}]",
			wantErr: "configure",
		},
		"Administrator": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntags: [management, administrator]",
			wantErr: "tags[1]: administrator is refused: it gives full control",
		},
		"AdministratorUpperCase": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntags: [Administrator]",
			wantErr: "tags[0]: Administrator is refused",
		},
		"Impersonator": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntags: [impersonator]",
			wantErr: "impersonator is refused",
		},
		"TagWithComma": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntags: ['management,administrator']",
			wantErr: "no commas",
		},
		"EmptyTag": {
			yaml:    "vhosts: {a: {configure: '', write: '', read: ''}}\ntags: ['']",
			wantErr: "tags[0]: empty tag",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, warnings, err := rabbitmq.Driver{}.ParseRole(decoder(tt.yaml))
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

func TestParseNothing(t *testing.T) {
	t.Parallel()
	if _, err := (rabbitmq.Driver{}).ParseConnection(nil); err == nil {
		t.Error("ParseConnection(nil) succeeded")
	}
	if _, _, err := (rabbitmq.Driver{}).ParseRole(nil); err == nil {
		t.Error("ParseRole(nil) succeeded")
	}
}

// systemNames are names RabbitMQ keeps for itself, built in and generated.
var systemNames = []string{
	"amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic",
	"amq.rabbitmq.trace", "amq.rabbitmq.log", "amq.rabbitmq.event",
	"amq.gen-JzTY20BRgKO-HjmUJj0wLg", "amq.gen-", "amq.", "amq.x", "amq.orders.q", "amq.\n", "amq. x", "amq.é",
}

// FuzzParseRole feeds arbitrary YAML to ParseRole: it never panics, and a role
// it accepts has a vhost, every topic permission in one of its vhosts, no
// refused tag, and no configure regexp that matches (anywhere, as RabbitMQ
// matches) an amq. name: the built-in ones, generated ones, or "amq."
// followed by the fuzzed text.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{
		`vhosts: {a: {configure: "", write: "", read: ""}}`,
		"vhosts: {a: {configure: '', write: '', read: ''}}\ntopic_permissions: [{vhost: a, exchange: x, write: '', read: ''}]",
		"vhosts: {a: {configure: '', write: '', read: ''}}\ntags: [management]",
		"vhosts: {a: {configure: '.*', write: '', read: ''}}",
		"vhosts: {a: {configure: '^orders\\.', write: '.*', read: '.*'}}",
		"vhosts: {a: {configure: 'q', write: '', read: ''}}",
		"vhosts: {a: {configure: '\\bgen-', write: '', read: ''}}",
		"vhosts: {a: {configure: '^(?i:AMQ)', write: '', read: ''}}",
		"vhosts: {a: {configure: '$', write: '', read: ''}}",
		"vhosts: {a: {configure: '^$', write: '', read: ''}}",
		"vhosts: {a: {configure: '(?m)^x', write: '', read: ''}}",
		"vhosts: {a: {configure: '', write: '', read: ''}}\ntags: [monitoring]",
		"vhosts: {a: {configure: '', write: '', read: ''}}\ntags: [policymaker]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		got, _, err := rabbitmq.Driver{}.ParseRole(decoder(src))
		if err != nil {
			return
		}
		r := got
		if len(r.Vhosts) == 0 {
			t.Error("accepted a role without vhosts")
		}
		for _, tp := range r.TopicPermissions {
			if _, ok := r.Vhosts[tp.Vhost]; !ok {
				t.Errorf("accepted a topic permission in vhost %q, not one of the role's", tp.Vhost)
			}
		}
		for _, tag := range r.Tags {
			if l := strings.ToLower(tag); l == "administrator" || l == "impersonator" || l == "monitoring" || l == "policymaker" {
				t.Errorf("accepted tag %q", tag)
			}
		}
		names := append(slices.Clone(systemNames), "amq."+src, "amq.x"+src, "amq.\n"+src)
		for vhost, p := range r.Vhosts {
			if p.Configure == "" {
				continue // RabbitMQ: "" allows nothing
			}
			re, err := regexp.Compile(p.Configure)
			if err != nil {
				t.Errorf("vhost %q: accepted configure %q, which does not compile: %v", vhost, p.Configure, err)
				continue
			}
			for _, n := range names {
				if re.MatchString(n) {
					t.Errorf("vhost %q: accepted configure %q, which matches %q", vhost, p.Configure, n)
				}
			}
		}
	})
}
