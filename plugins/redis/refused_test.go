package redis

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

func TestSimulate(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		rules []string
		want  []string
	}{
		"Nothing":          {nil, nil},
		"ReadWrite":        {[]string{"+@read", "+@write", "-@dangerous"}, nil},
		"Write":            {[]string{"+@write"}, []string{"migrate"}},
		"Slow":             {[]string{"+@slow", "-@admin"}, []string{"migrate"}},
		"SlowNoDanger":     {[]string{"+@slow", "-@dangerous"}, nil},
		"AllThenNone":      {[]string{"allcommands", "nocommands"}, nil},
		"AllThenTakeBack":  {[]string{"+@all", "-@admin", "-@dangerous"}, nil},
		"ConfigGet":        {[]string{"+config|get"}, []string{"config|get"}},
		"ConfigThenGetOff": {[]string{"+config", "-config|get"}, []string{"config|resetstat", "config|rewrite", "config|set"}},
		"CaseInsensitive":  {[]string{"+CONFIG|GET", "+@ADMIN", "-@Admin"}, nil},
		"FirstArg":         {[]string{"+shutdown|nosave"}, []string{"shutdown"}},
		"FirstArgRemoved":  {[]string{"+shutdown|nosave", "-shutdown"}, nil},
		"SafeSubcommand":   {[]string{"+acl|whoami", "+client|setname", "+cluster|slots"}, nil},
		"Connection":       {[]string{"+@connection", "-client|list"}, []string{"client|kill", "client|no-evict", "client|pause", "client|unblock", "client|unpause"}},
		"KeysIgnored":      {[]string{"~*", "&*", "%R~x", "allkeys"}, nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := simulate(tt.rules, builtinCategories).granted(); !slices.Equal(got, tt.want) {
				t.Errorf("simulate(%q) grants %q, want %q", tt.rules, got, tt.want)
			}
		})
	}
}

// adminClient returns a client logged in as the Redis test server's admin.
func adminClient(t *testing.T) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(plugintest.RedisURL(t))
	if err != nil {
		t.Fatal(plugins.Sanitize(err))
	}
	opt.DisableIdentity = true
	c := goredis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// probeUser makes a switched-off user with rules, as CheckRole does,
// deleted when the test ends.
func probeUser(t *testing.T, c *goredis.Client, rules ...string) string {
	t.Helper()
	name := plugins.NewUsername("reftest", usernameLimit)
	t.Cleanup(func() { _ = c.ACLDelUser(context.WithoutCancel(t.Context()), name).Err() })
	if err := c.ACLSetUser(t.Context(), name, append([]string{"reset", "off", "resetkeys", "resetchannels", "-@all"}, rules...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %q: %v", rules, err)
	}
	return name
}

// TestBuiltinTableMatchesServer grants each category the server has, and
// each refused command by name, to a user of its own, and compares what
// ACL DRYRUN on the live server says it may run with what the built-in
// table of Redis 7.0 predicts, and with what the ACL CAT fallback predicts.
// A server whose categories hold more refused commands than the table makes
// this fail.
func TestBuiltinTableMatchesServer(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	cats, err := c.ACLCat(t.Context()).Result()
	if err != nil {
		t.Fatalf("ACL CAT: %v", err)
	}
	var cases [][]string
	for _, cat := range cats {
		cases = append(cases, []string{"+@" + cat})
	}
	for _, rc := range refusedCommands {
		cases = append(cases, []string{"+" + rc.name}, []string{"+@all", "-" + rc.name})
	}
	cases = append(cases,
		[]string{"+@read", "+@write", "-@dangerous"},
		[]string{"+@slow", "-@admin"},
		[]string{"+@connection", "(~x +@slow)"},
		[]string{"(~x +config|get)"},
	)
	for _, rules := range cases {
		probe := probeUser(t, c, rules...)
		live, err := dryRunGrants(t.Context(), c, probe)
		if err != nil {
			t.Fatalf("%q: dryRunGrants: %v", rules, err)
		}
		root, selectors := splitRules(rules)
		var want []string
		for _, rs := range append(selectors, root) {
			want = append(want, simulate(rs, builtinCategories).granted()...)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		slices.Sort(live)
		if !slices.Equal(live, want) {
			t.Errorf("%q: the server's ACL DRYRUN grants %q, the built-in table %q", rules, live, want)
		}
		fallback, err := catGrants(t.Context(), c, rules)
		if err != nil {
			t.Fatalf("%q: catGrants: %v", rules, err)
		}
		if !slices.Equal(fallback, want) {
			t.Errorf("%q: the ACL CAT fallback grants %q, the built-in table %q", rules, fallback, want)
		}
	}
}

// TestLiveGrants: the check CheckRole runs on the live server refuses a
// user that may make users or read CONFIG, names the commands, and passes a
// plain read-write user. Roles that reach it have passed ParseRole; this
// plays the case of a server whose categories hold more than the table.
func TestLiveGrants(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	for name, tt := range map[string]struct {
		rules   []string
		wantErr []string
	}{
		"ReadWrite":  {[]string{"~a:*", "+@read", "+@write", "-@dangerous"}, nil},
		"ACLSetUser": {[]string{"+acl|setuser"}, []string{"ACL SETUSER", "creates ACL users"}},
		"Slow":       {[]string{"+@slow"}, []string{"CONFIG GET", "ACL SETUSER", "SHUTDOWN"}},
		"Selector":   {[]string{"+get", "(~x +config|get)"}, []string{"CONFIG GET", "requirepass"}},
	} {
		t.Run(name, func(t *testing.T) {
			probe := probeUser(t, c, tt.rules...)
			err := liveGrants(t.Context(), c, probe, tt.rules)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("liveGrants(%q) = %v, want nil", tt.rules, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("liveGrants(%q) = nil, want an error", tt.rules)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("liveGrants(%q) = %v, want it to contain %q", tt.rules, err, w)
				}
			}
		})
	}
}

// TestCheckRoleRunsLiveCheck: CheckRole refuses a role built by hand that
// grants ACL SETUSER, even past ParseRole, and leaves no probe user behind.
func TestCheckRoleRunsLiveCheck(t *testing.T) {
	t.Parallel()
	p, err := Driver{}.Open(t.Context(), &Connection{Addr: strings.TrimPrefix(plugintest.RedisURL(t), "redis://")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer p.Close()
	err = p.CheckRole(t.Context(), &Role{Rules: []string{"+acl|setuser"}})
	if err == nil || !strings.Contains(err.Error(), "ACL SETUSER") {
		t.Errorf("CheckRole(+acl|setuser) = %v, want an error naming ACL SETUSER", err)
	}
	if err := p.CheckRole(t.Context(), &Role{Rules: []string{"~a:*", "+@read"}}); err != nil {
		t.Errorf("CheckRole(+@read) = %v", err)
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		seeds []string
		tls   bool
		want  string
	}{
		"Loopback":  {seeds: []string{"127.0.0.1:6379"}},
		"Localhost": {seeds: []string{"LocalHost:6379"}},
		"IPv6":      {seeds: []string{"[::1]:6379"}},
		"TLS":       {seeds: []string{"10.0.0.5:6379"}, tls: true},
		"Remote":    {seeds: []string{"10.0.0.5:6379"}, want: "the admin connection to 10.0.0.5:6379 is plain text off loopback"},
		"Name":      {seeds: []string{"cache.internal:6379"}, want: "cache.internal:6379"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := &Plugin{seeds: tt.seeds, password: secret.New("hunter2")}
			if tt.tls {
				p.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			got := p.Warnings(t.Context())
			switch {
			case tt.want == "" && len(got) > 0:
				t.Errorf("Warnings = %q, want none", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)):
				t.Errorf("Warnings = %q, want one containing %q", got, tt.want)
			case strings.Contains(strings.Join(got, ""), "hunter2"):
				t.Errorf("Warnings quote the admin password: %q", got)
			}
		})
	}
}

// FuzzParseRole feeds arbitrary YAML to ParseRole: it never panics, and a
// role it accepts holds no rule that touches the user's passwords or state,
// grants no refused category (@admin, @dangerous, @all, allcommands), and,
// played in order over the built-in table, grants no refused command, at
// the top level or in a selector.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{
		`rules: ["~orders:*", "+@read"]`,
		`rules: ["(~a +get)", "%R~b"]`,
		`rules: [nopass]`,
		`rules: ["(~a >x)"]`,
		`rules: ["~a", "+@read", "+@write", "-@dangerous"]`,
		`rules: ["+@slow", "-@admin", "-migrate"]`,
		`rules: ["+@slow"]`,
		`rules: ["(~x +@slow)"]`,
		`rules: ["+CONFIG|GET"]`,
		`rules: ["+config|help", "+acl|whoami"]`,
		`rules: ["+debug|reload"]`,
		`rules: ["+@all", "-@admin", "-@dangerous"]`,
		`rules: ["(~x allcommands)"]`,
		`rules: ["+@connection", "-client|kill"]`,
		`rules: ["+config|get", "-config"]`,
	} {
		f.Add(s)
	}
	forbidden := []string{"nopass", "resetpass", "on", "off", "reset", "clearselectors", "skip-sanitize-payload",
		"allcommands", "+@all", "+@admin", "+@dangerous"}
	f.Fuzz(func(t *testing.T, src string) {
		got, _, err := Driver{}.ParseRole(plugintest.Decoder(src))
		if err != nil {
			return
		}
		rules := got.Rules
		for _, rule := range rules {
			parts := []string{rule}
			if strings.HasPrefix(rule, "(") {
				parts = strings.Split(strings.TrimSuffix(strings.TrimPrefix(rule, "("), ")"), " ")
			}
			for _, p := range parts {
				if p == "" || slices.Contains(forbidden, strings.ToLower(p)) || strings.ContainsAny(p[:1], "><#!") ||
					strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
					t.Errorf("accepted rule %q (part %q)", rule, p)
				}
			}
		}
		root, selectors := splitRules(rules)
		for _, rs := range append(selectors, root) {
			if granted := simulate(rs, builtinCategories).granted(); len(granted) > 0 {
				t.Errorf("accepted rules %q grant %q", rules, granted)
			}
		}
		if _, err := got.check(); err != nil {
			t.Errorf("a role ParseRole returned fails its own check: %v", err)
		}
	})
}
