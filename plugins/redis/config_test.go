package redis_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins/redis"
)

func TestParseConnection(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		yaml         string
		want         redis.Connection // compared without Password
		wantPassword string
		wantErr      string
	}{
		"Addr": {yaml: "addr: cache.internal:6379", want: redis.Connection{Addr: "cache.internal:6379"}},
		"Addrs": {
			yaml: "addrs: [n1:7000, n2:7000, '[::1]:7000']",
			want: redis.Connection{Addrs: []string{"n1:7000", "n2:7000", "[::1]:7000"}},
		},
		"Full": {
			yaml: `{addr: "10.0.0.1:6380", username: credbroker, password: env:REDIS_ADMIN_PW,
			        tls: {enabled: true, ca_file: /etc/ca.pem, server_name: cache.internal}}`,
			want: redis.Connection{Addr: "10.0.0.1:6380", Username: "credbroker",
				TLS: redis.TLS{Enabled: true, CAFile: "/etc/ca.pem", ServerName: "cache.internal"}},
			wantPassword: "env:REDIS_ADMIN_PW",
		},
		"TLSOnly":        {yaml: "addr: h:6379\ntls: {enabled: true}", want: redis.Connection{Addr: "h:6379", TLS: redis.TLS{Enabled: true}}},
		"AddrAndAddrs":   {yaml: "addr: h:6379\naddrs: [h:7000]", wantErr: "addr and addrs: give one"},
		"Neither":        {yaml: "username: admin", wantErr: "addr or addrs: required"},
		"EmptyAddrs":     {yaml: "addrs: []", wantErr: "addr or addrs: required"},
		"NoPort":         {yaml: "addr: cache.internal", wantErr: "addr: \"cache.internal\": want host:port"},
		"BadPort":        {yaml: "addr: h:70000", wantErr: "not a TCP port"},
		"NoHost":         {yaml: "addr: :6379", wantErr: "no host"},
		"BadSeed":        {yaml: "addrs: [h:7000, h]", wantErr: "addrs[1]"},
		"DuplicateSeed":  {yaml: "addrs: [h:7000, h:7000]", wantErr: "addrs[1]: \"h:7000\" is listed twice"},
		"InlinePassword": {yaml: "addr: h:6379\npassword: hunter2", wantErr: "inline"},
		"RelativeFile":   {yaml: "addr: h:6379\npassword: file:pw", wantErr: "absolute"},
		"UnknownKey":     {yaml: "addr: h:6379\npasword: env:X", wantErr: "pasword"},
		"UnknownTLSKey":  {yaml: "addr: h:6379\ntls: {enabled: true, insecure: true}", wantErr: "insecure"},
		"TLSNotEnabled":  {yaml: "addr: h:6379\ntls: {ca_file: /etc/ca.pem}", wantErr: "enabled is not"},
		"BlankUsername":  {yaml: "addr: h:6379\nusername: 'a b'", wantErr: "username"},
		"NotAMap":        {yaml: "[addr]", wantErr: "cannot unmarshal"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := redis.Driver{}.ParseConnection(decoder(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConnection = %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error quotes the inline password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConnection: %v", err)
			}
			c := *got
			if c.Password.String() != tt.wantPassword {
				t.Errorf("Password = %s, want %s", c.Password, tt.wantPassword)
			}
			if c.Addr != tt.want.Addr || !slices.Equal(c.Addrs, tt.want.Addrs) || c.Username != tt.want.Username || c.TLS != tt.want.TLS {
				t.Errorf("ParseConnection = %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		yaml        string
		wantRules   []string // nil: as given
		wantWarning string
		wantErr     string
	}{
		"Orders": {yaml: `rules: ["~orders:*", "&orders:*", "%R~cache:*", "%W~out:*", "%RW~both:*", "+@read", "-@dangerous", "+get", "-flushall"]`},
		"Keywords": {
			yaml: `rules: [allkeys, allchannels, nocommands, resetkeys, resetchannels, "+@read", "+client|id", "+json.get", sanitize-payload]`,
		},
		"CaseInsensitive": {yaml: `rules: [AllKeys, "+GET", "%rw~x"]`},
		"Selector": {
			yaml:      `rules: ["+@read", "(~audit:*   +xadd  %R~log:*)"]`,
			wantRules: []string{"+@read", "(~audit:* +xadd %R~log:*)"},
		},
		"SafeSubcommands":       {yaml: `rules: ["+acl|whoami", "+acl|cat", "+config|help", "+client|setname", "+client|id", "+cluster|slots", "+slowlog|help"]`},
		"SlowWithoutAdmin":      {yaml: `rules: ["+@slow", "-@admin", "-migrate"]`},
		"SlowWithoutDanger":     {yaml: `rules: ["+@read", "+@slow", "-@dangerous"]`},
		"WriteWithoutMigrate":   {yaml: `rules: ["+@read", "+@write", "-migrate"]`},
		"TakenBackByName":       {yaml: `rules: ["+@connection", "-client|kill", "-client|list", "-client|pause", "-client|unpause", "-client|unblock", "-client|no-evict"]`},
		"NoCommandsAfter":       {yaml: `rules: ["+@slow", "nocommands", "+get"]`},
		"SelectorTakesBack":     {yaml: `rules: ["(~a +@slow -@admin -migrate)"]`},
		"AllCommands":           {yaml: `rules: [allkeys, allcommands]`, wantErr: `rules[1]: "allcommands": grants every command`},
		"AllCategory":           {yaml: `rules: ["+@all", "-@dangerous"]`, wantErr: `rules[0]: "+@all": grants every command`},
		"AllUpper":              {yaml: `rules: ["+@ALL"]`, wantErr: `rules[0]`},
		"Admin":                 {yaml: `rules: ["+@read", "+@admin"]`, wantErr: `rules[1]: "+@admin": grants every administrative command`},
		"Dangerous":             {yaml: `rules: ["+@dangerous", "-@admin"]`, wantErr: `rules[0]: "+@dangerous"`},
		"ACLSetUser":            {yaml: `rules: ["+acl|setuser"]`, wantErr: `rules[0]: "+acl|setuser": grants ACL SETUSER (ACL: it creates ACL users`},
		"ACL":                   {yaml: `rules: ["+ACL"]`, wantErr: `rules[0]: "+ACL": grants ACL SETUSER, ACL DELUSER, ACL DRYRUN, ACL GETUSER, ACL LIST, ACL LOAD and 3 more (ACL: it creates`},
		"Config":                {yaml: `rules: ["+config"]`, wantErr: `grants CONFIG GET, CONFIG SET, CONFIG RESETSTAT, CONFIG REWRITE (CONFIG:`},
		"ConfigGet":             {yaml: `rules: ["+CONFIG|GET"]`, wantErr: `rules[0]: "+CONFIG|GET": grants CONFIG GET (CONFIG: CONFIG SET rewrites`},
		"TakenBackLater":        {yaml: `rules: ["+config|get", "-config"]`, wantErr: `rules[0]: "+config|get"`},
		"FirstArg":              {yaml: `rules: ["+debug|reload"]`, wantErr: `grants DEBUG`},
		"ShutdownNosave":        {yaml: `rules: ["+shutdown|nosave"]`, wantErr: `grants SHUTDOWN`},
		"ModuleInSelector":      {yaml: `rules: ["(~x +module|load)"]`, wantErr: `rules[0]: "(~x +module|load)": in the selector, "+module|load": grants MODULE LOAD`},
		"AllInSelector":         {yaml: `rules: ["~a", "(~x +@all)"]`, wantErr: `in the selector, "+@all"`},
		"AllCommandsInSelector": {yaml: `rules: ["(~x allcommands)"]`, wantErr: `in the selector, "allcommands"`},
		"Slow":                  {yaml: `rules: ["~a", "+@slow"]`, wantErr: `rules: "+@slow" grants ACL SETUSER, CONFIG GET, CONFIG SET, MODULE LOAD, SHUTDOWN, REPLICAOF and 45 more (ACL:`},
		"SlowNamesConfigGet":    {yaml: `rules: ["+@slow", "-acl"]`, wantErr: `CONFIG GET`},
		"SlowInSelector":        {yaml: `rules: ["+get", "(~x +@slow)"]`, wantErr: `rules[1]: in the selector, "+@slow" grants`},
		"Write":                 {yaml: `rules: ["+@read", "+@write"]`, wantErr: `"+@write" grants MIGRATE (MIGRATE: it moves keys`},
		"Keyspace":              {yaml: `rules: ["+@keyspace"]`, wantErr: `"+@keyspace" grants MIGRATE`},
		"Connection":            {yaml: `rules: ["+@connection"]`, wantErr: `"+@connection" grants CLIENT KILL, CLIENT LIST, CLIENT NO-EVICT`},
		"LastRuleWins":          {yaml: `rules: ["+@slow", "-@slow", "+@slow"]`, wantErr: `rules: "+@slow" grants`},
		"Monitor":               {yaml: `rules: ["+monitor"]`, wantErr: `grants MONITOR`},
		"Sync":                  {yaml: `rules: ["+sync"]`, wantErr: `grants SYNC`},
		"PSync":                 {yaml: `rules: ["+psync"]`, wantErr: `grants PSYNC`},
		"ReplicaOf":             {yaml: `rules: ["+replicaof"]`, wantErr: `grants REPLICAOF`},
		"SlaveOf":               {yaml: `rules: ["+slaveof"]`, wantErr: `grants SLAVEOF`},
		"Failover":              {yaml: `rules: ["+failover"]`, wantErr: `grants FAILOVER`},
		"Migrate":               {yaml: `rules: ["+migrate"]`, wantErr: `grants MIGRATE`},
		"Save":                  {yaml: `rules: ["+save"]`, wantErr: `grants SAVE`},
		"BgSave":                {yaml: `rules: ["+bgsave"]`, wantErr: `grants BGSAVE`},
		"ClientKill":            {yaml: `rules: ["+client|kill"]`, wantErr: `grants CLIENT KILL`},
		"ClientList":            {yaml: `rules: ["+client|list"]`, wantErr: `grants CLIENT LIST`},
		"Client":                {yaml: `rules: ["+client"]`, wantErr: `one by one (+client|…)`},
		"ClusterForget":         {yaml: `rules: ["+cluster|forget"]`, wantErr: `grants CLUSTER FORGET`},
		"SlowlogGet":            {yaml: `rules: ["+slowlog|get"]`, wantErr: `grants SLOWLOG GET`},
		"Nopass":                {yaml: `rules: ["~a", nopass]`, wantErr: `rules[1]: "nopass": would let anyone log in`},
		"NopassUpper":           {yaml: `rules: [NOPASS]`, wantErr: `rules[0]: "NOPASS"`},
		"AddPassword":           {yaml: `rules: ["~a", "+get", ">hunter2"]`, wantErr: `rules[2]: ">hunter2": sets or removes a password`},
		"RemovePassword":        {yaml: `rules: ["<old"]`, wantErr: `rules[0]`},
		"AddHash":               {yaml: `rules: ["#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"]`, wantErr: `rules[0]`},
		"RemoveHash":            {yaml: `rules: ["!5e88"]`, wantErr: `rules[0]`},
		"On":                    {yaml: `rules: ["~a", "on"]`, wantErr: `rules[1]: "on": credbroker enables the user itself`},
		"Off":                   {yaml: `rules: ["off"]`, wantErr: `rules[0]: "off": would disable`},
		"Reset":                 {yaml: `rules: ["~a", "+get", "reset"]`, wantErr: `rules[2]: "reset"`},
		"ResetPass":             {yaml: `rules: ["resetpass"]`, wantErr: `rules[0]: "resetpass"`},
		"ClearSelectors":        {yaml: `rules: ["(~a +get)", "clearselectors"]`, wantErr: `rules[1]: "clearselectors": would silently drop`},
		"SkipSanitize":          {yaml: `rules: ["skip-sanitize-payload"]`, wantErr: `rules[0]`},
		"PasswordInSel":         {yaml: `rules: ["(~a >pw)"]`, wantErr: `rules[0]: "(~a >pw)": in the selector, ">pw": sets or removes a password`},
		"NopassInSel":           {yaml: `rules: ["(nopass)"]`, wantErr: `rules[0]`},
		"OnInSel":               {yaml: `rules: ["(~a on)"]`, wantErr: `rules[0]`},
		"NestedSel":             {yaml: `rules: ["(~a (+get))"]`, wantErr: "nested"},
		"EmptySel":              {yaml: `rules: ["( )"]`, wantErr: "empty selector"},
		"UnclosedSel":           {yaml: `rules: ["(~a +get"]`, wantErr: "ends with )"},
		"TabInSel":              {yaml: "rules: [\"(~a\\t+get)\"]", wantErr: "control character"},
		"SanitizeInSel":         {yaml: `rules: ["(sanitize-payload)"]`, wantErr: "not allowed in a selector"},
		"Blank":                 {yaml: `rules: ["~a +get"]`, wantErr: "give one rule an item"},
		"Empty":                 {yaml: `rules: [""]`, wantErr: `rules[0]: "": empty rule`},
		"EmptyPattern":          {yaml: `rules: ["~"]`, wantErr: "empty pattern"},
		"EmptyChannel":          {yaml: `rules: ["&"]`, wantErr: "empty pattern"},
		"BadPermissions":        {yaml: `rules: ["%X~a"]`, wantErr: "key permissions"},
		"NoTilde":               {yaml: `rules: ["%R"]`, wantErr: "%R~pattern"},
		"PermNoPattern":         {yaml: `rules: ["%R~"]`, wantErr: "empty pattern"},
		"EmptyCommand":          {yaml: `rules: ["+"]`, wantErr: "not a command name"},
		"EmptyCategory":         {yaml: `rules: ["+@"]`, wantErr: "not a category name"},
		"EmptySubcommand":       {yaml: `rules: ["+config|"]`, wantErr: "not a command name"},
		"Unknown":               {yaml: `rules: ["readonly"]`, wantErr: "unknown rule"},
		"NoRules":               {yaml: `rules: []`, wantErr: "rules: required"},
		"Nothing":               {yaml: `{}`, wantErr: "rules: required"},
		"UnknownKey":            {yaml: `rules: ["~a"]` + "\nrule: [x]", wantErr: "rule"},
		"AllErrors":             {yaml: `rules: [nopass, "~a", off]`, wantErr: `rules[2]: "off"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, warnings, err := redis.Driver{}.ParseRole(decoder(tt.yaml))
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
			if tt.wantRules != nil && !slices.Equal(got.Rules, tt.wantRules) {
				t.Errorf("Rules = %q, want %q", got.Rules, tt.wantRules)
			}
		})
	}
}
