package mqtt_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins/mqtt"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

func TestParseConnection(t *testing.T) {
	t.Parallel()
	const creds = "username: admin\npassword: env:MQTT_ADMIN_PW\n"
	tests := map[string]struct {
		yaml    string
		want    mqtt.Connection // compared without Password
		wantErr string
	}{
		"TCP":  {yaml: creds + "url: tcp://127.0.0.1:1885", want: mqtt.Connection{URL: "tcp://127.0.0.1:1885", Username: "admin"}},
		"MQTT": {yaml: creds + "url: mqtt://broker.internal", want: mqtt.Connection{URL: "mqtt://broker.internal", Username: "admin"}},
		"Full": {
			yaml: creds + `url: mqtts://broker.internal:8883
tls: {ca_file: /etc/ca.pem, server_name: broker.internal}
client_id_prefix: cb-admin.1_`,
			want: mqtt.Connection{URL: "mqtts://broker.internal:8883", Username: "admin",
				TLS: mqtt.TLS{CAFile: "/etc/ca.pem", ServerName: "broker.internal"}, ClientIDPrefix: "cb-admin.1_"},
		},
		"SSL":            {yaml: creds + "url: ssl://[::1]:8883", want: mqtt.Connection{URL: "ssl://[::1]:8883", Username: "admin"}},
		"TLSScheme":      {yaml: creds + "url: tls://h", want: mqtt.Connection{URL: "tls://h", Username: "admin"}},
		"NoURL":          {yaml: creds, wantErr: "url: required"},
		"BadScheme":      {yaml: creds + "url: ws://h:9001", wantErr: `url: scheme "ws"`},
		"NoScheme":       {yaml: creds + "url: h:1883", wantErr: "url: scheme"},
		"URLCredentials": {yaml: creds + "url: tcp://admin:hunter2@h:1883", wantErr: "url: holds credentials"},
		"URLPath":        {yaml: creds + "url: tcp://h:1883/topic", wantErr: "nothing after it"},
		"URLQuery":       {yaml: creds + "url: tcp://h:1883?x=1", wantErr: "nothing after it"},
		"BadPort":        {yaml: creds + "url: tcp://h:70000", wantErr: "not a TCP port"},
		"EmptyPort":      {yaml: creds + "url: \"tcp://h:\"", wantErr: "empty port"},
		"NoHost":         {yaml: creds + "url: tcp://:1883", wantErr: "no host"},
		"NoUsername":     {yaml: "url: tcp://h\npassword: env:X", wantErr: "username: required"},
		"NoPassword":     {yaml: "url: tcp://h\nusername: admin", wantErr: "password: required"},
		"InlinePassword": {yaml: "url: tcp://h\nusername: admin\npassword: hunter2", wantErr: "inline"},
		"RelativeFile":   {yaml: "url: tcp://h\nusername: admin\npassword: file:pw", wantErr: "absolute"},
		"TLSPlainText":   {yaml: creds + "url: tcp://h\ntls: {ca_file: /etc/ca.pem}", wantErr: "tls: set for a plain-text URL"},
		"InsecureTLS":    {yaml: creds + "url: ssl://h\ntls: {insecure_skip_verify: true}", wantErr: "insecure_skip_verify"},
		"BadPrefix":      {yaml: creds + "url: tcp://h\nclient_id_prefix: 'a b'", wantErr: "client_id_prefix"},
		"LongPrefix":     {yaml: creds + "url: tcp://h\nclient_id_prefix: " + strings.Repeat("a", 33), wantErr: "client_id_prefix"},
		"ControlUser":    {yaml: "url: tcp://h\nusername: \"a\\x01\"\npassword: env:X", wantErr: "username: not valid"},
		"UnknownKey":     {yaml: creds + "url: tcp://h\npasword: env:X", wantErr: "pasword"},
		"NotAMap":        {yaml: "[url]", wantErr: "cannot unmarshal"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := mqtt.Driver{}.ParseConnection(decoder(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConnection = %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error quotes the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConnection: %v", err)
			}
			if got.Password.String() != "env:MQTT_ADMIN_PW" {
				t.Errorf("Password = %s, want env:MQTT_ADMIN_PW", got.Password)
			}
			c := *got
			c.Password = tt.want.Password
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
		want        *mqtt.Role
		wantWarning string
		wantErr     string
	}{
		"ACLs": {
			yaml: `acls:
  - {type: publishClientSend, topic: "sensors/+/temp", allow: true}
  - {type: subscribePattern, topic: "commands/#", allow: true, priority: 1}
  - {type: publishClientSend, topic: "sensors/secret/#", allow: false, priority: -5}
  - {type: publishClientReceive, topic: "#", allow: true}
  - {type: subscribeLiteral, topic: "a/#", allow: true}
  - {type: unsubscribeLiteral, topic: "a", allow: true}
  - {type: unsubscribePattern, topic: "+", allow: true}
  - {type: subscribePattern, topic: "$SYS/#", allow: true}`,
			want: &mqtt.Role{ACLs: []mqtt.ACL{
				{Type: "publishClientSend", Topic: "sensors/+/temp", Allow: true},
				{Type: "subscribePattern", Topic: "commands/#", Allow: true, Priority: 1},
				{Type: "publishClientSend", Topic: "sensors/secret/#", Priority: -5},
				{Type: "publishClientReceive", Topic: "#", Allow: true},
				{Type: "subscribeLiteral", Topic: "a/#", Allow: true},
				{Type: "unsubscribeLiteral", Topic: "a", Allow: true},
				{Type: "unsubscribePattern", Topic: "+", Allow: true},
				{Type: "subscribePattern", Topic: "$SYS/#", Allow: true},
			}},
		},
		"Roles":     {yaml: "roles: [readers, writers]", want: &mqtt.Role{Roles: []string{"readers", "writers"}}},
		"Both":      {yaml: "acls: [{type: subscribePattern, topic: a, allow: false}]\nroles: [r]", want: &mqtt.Role{ACLs: []mqtt.ACL{{Type: "subscribePattern", Topic: "a"}}, Roles: []string{"r"}}},
		"OnlyDeny":  {yaml: "acls: [{type: subscribePattern, topic: a, allow: false}]", wantWarning: "every ACL denies"},
		"Nothing":   {yaml: "{}", wantErr: "acls or roles: required"},
		"EmptyACLs": {yaml: "acls: []\nroles: []", wantErr: "acls or roles: required"},
		"BadType":   {yaml: "acls: [{type: publish, topic: a, allow: true}]", wantErr: `acls[0]: type: "publish": want one of publishClientSend`},
		"TypeCase":  {yaml: "acls: [{type: PublishClientSend, topic: a, allow: true}]", wantErr: `acls[0]: type: "PublishClientSend"`},
		"NoType":    {yaml: "acls: [{topic: a, allow: true}]", wantErr: `acls[0]: type: ""`},
		"NoAllow":   {yaml: "acls: [{type: publishClientSend, topic: a}]", wantErr: "acls[0]: allow: required"},
		"NoTopic":   {yaml: "acls: [{type: publishClientSend, allow: true}]", wantErr: "acls[0]: topic: empty topic"},
		"HashMid":   {yaml: "acls: [{type: publishClientSend, topic: a/#/b, allow: true}]", wantErr: "# must be the last level"},
		"HashPart":  {yaml: "acls: [{type: subscribePattern, topic: a/b#, allow: true}]", wantErr: "whole level"},
		"PlusPart":  {yaml: "acls: [{type: subscribePattern, topic: a/+b, allow: true}]", wantErr: "whole level"},
		"Control": {
			yaml:    `acls: [{type: subscribePattern, topic: "a", allow: true}, {type: publishClientSend, topic: "$CONTROL/dynamic-security/v1", allow: true}]`,
			wantErr: `acls[1]: topic: "$CONTROL/dynamic-security/v1": a $CONTROL topic`,
		},
		"ControlHash":      {yaml: `acls: [{type: publishClientSend, topic: "$CONTROL/#", allow: true}]`, wantErr: "a $CONTROL topic"},
		"ControlLowerCase": {yaml: `acls: [{type: publishClientSend, topic: "$control/#", allow: true}]`, wantErr: "a $CONTROL topic"},
		"ControlAlone":     {yaml: `acls: [{type: publishClientSend, topic: "$CONTROL", allow: true}]`, wantErr: "a $CONTROL topic"},
		"ControlSubscribe": {yaml: `acls: [{type: subscribeLiteral, topic: "$CONTROL/dynamic-security/v1/response", allow: true}]`, wantErr: "a $CONTROL topic"},
		"ControlDeny":      {yaml: `acls: [{type: publishClientSend, topic: "$CONTROL/#", allow: false}]`, wantErr: "a $CONTROL topic"},
		"ControlReceive":   {yaml: `acls: [{type: publishClientReceive, topic: "$CONTROL/#", allow: true}]`, wantErr: "a $CONTROL topic"},
		"ControlLater":     {yaml: `acls: [{type: publishClientSend, topic: "x/$CONTROL/#", allow: true}]`, want: &mqtt.Role{ACLs: []mqtt.ACL{{Type: "publishClientSend", Topic: "x/$CONTROL/#", Allow: true}}}},
		"Duplicate":        {yaml: "acls: [{type: publishClientSend, topic: a, allow: true}, {type: publishClientSend, topic: a, allow: false}]", wantErr: "acls[1]: the same type and topic as acls[0]"},
		"Priority":         {yaml: "acls: [{type: publishClientSend, topic: a, allow: true, priority: 1000001}]", wantErr: "acls[0]: priority: 1000001"},
		"NegPriority":      {yaml: "acls: [{type: publishClientSend, topic: a, allow: true, priority: -1000001}]", wantErr: "priority"},
		"ControlChar":      {yaml: "acls: [{type: publishClientSend, topic: \"a\\x01\", allow: true}]", wantErr: "control character"},
		"LongTopic":        {yaml: "acls: [{type: publishClientSend, topic: " + strings.Repeat("a", 65536) + ", allow: true}]", wantErr: "65536 bytes"},
		"ManagedRole":      {yaml: "roles: [cb_x]", wantErr: `roles[0]: "cb_x": roles starting with cb_`},
		"EmptyRole":        {yaml: `roles: [""]`, wantErr: "roles[0]: empty role name"},
		"DuplicateRole":    {yaml: "roles: [a, b, a]", wantErr: `roles[2]: "a" is listed twice`},
		"UnknownKey":       {yaml: "acl: []", wantErr: "acl"},
		"UnknownACLKey":    {yaml: "acls: [{type: publishClientSend, topic: a, allow: true, qos: 1}]", wantErr: "qos"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, warnings, err := mqtt.Driver{}.ParseRole(decoder(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRole = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRole: %v", err)
			}
			if tt.wantWarning != "" {
				if len(warnings) != 1 || !strings.Contains(warnings[0], tt.wantWarning) {
					t.Errorf("warnings = %q, want one containing %q", warnings, tt.wantWarning)
				}
			} else if len(warnings) > 0 {
				t.Errorf("warnings = %q, want none", warnings)
			}
			if tt.want != nil && !equalRoles(got, tt.want) {
				t.Errorf("ParseRole = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func equalRoles(a, b *mqtt.Role) bool {
	if len(a.ACLs) != len(b.ACLs) || len(a.Roles) != len(b.Roles) {
		return false
	}
	for i := range a.ACLs {
		if a.ACLs[i] != b.ACLs[i] {
			return false
		}
	}
	for i := range a.Roles {
		if a.Roles[i] != b.Roles[i] {
			return false
		}
	}
	return true
}

// TestPlainTextWarning: plain text off loopback is a warning; TLS or
// loopback is not.
func TestPlainTextWarning(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]bool{
		"tcp://broker.internal:1883":  true,
		"mqtt://10.0.0.5":             true,
		"tcp://127.0.0.1:1885":        false,
		"tcp://localhost":             false,
		"tcp://[::1]:1883":            false,
		"mqtts://broker.internal:883": false,
		"ssl://10.0.0.5":              false,
	} {
		w, err := mqtt.PlainTextWarning(url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if (w != "") != want {
			t.Errorf("%s: warning %q, want one: %v", url, w, want)
		}
	}
}

// TestDriver: the name, the username limit and the metadata.
func TestDriver(t *testing.T) {
	t.Parallel()
	d := mqtt.New()
	if d.Name() != "mqtt" || d.UsernameLimit() != 64 {
		t.Errorf("Name, UsernameLimit = %q, %d; want mqtt, 64", d.Name(), d.UsernameLimit())
	}
	meta := mqtt.Driver{}.Describe()
	want := []string{"MQTT_HOST", "MQTT_PORT", "MQTT_TLS", "MQTT_USERNAME", "MQTT_PASSWORD", "MQTT_URL"}
	if strings.Join(meta.Env, ",") != strings.Join(want, ",") {
		t.Errorf("Describe().Env = %q, want %q", meta.Env, want)
	}
	var commands []string
	for _, c := range meta.Clients {
		commands = append(commands, c.Command)
		for tlsOn, wantArgs := range map[string]string{
			"0": "-h 127.0.0.1 -p 1885 -u cb_x",
			"1": "-h 127.0.0.1 -p 1885 -u cb_x --tls-use-os-certs",
			"":  "-h 127.0.0.1 -p 1885 -u cb_x --tls-use-os-certs", // no MQTT_TLS: TLS, which fails closed
		} {
			env := map[string]string{"MQTT_HOST": "127.0.0.1", "MQTT_PORT": "1885", "MQTT_USERNAME": "cb_x",
				"MQTT_PASSWORD": "pw-42", "MQTT_URL": "mqtt://cb_x:pw-42@127.0.0.1:1885"}
			if tlsOn != "" {
				env["MQTT_TLS"] = tlsOn
			}
			argv := c.Args(env)
			if strings.Join(argv, " ") != wantArgs {
				t.Errorf("%s, MQTT_TLS=%q: arguments %q, want %q", c.Command, tlsOn, argv, wantArgs)
			}
			if slices.ContainsFunc(argv, func(a string) bool { return strings.Contains(a, "pw-42") }) {
				t.Errorf("%s gets the password on its command line: %q", c.Command, argv)
			}
			if files := c.Files(env); len(files) != 1 || files[c.Command] != "-P pw-42\n" {
				t.Errorf("%s, MQTT_TLS=%q: option files %q, want the password in its own options file", c.Command, tlsOn, files)
			}
		}
	}
	if strings.Join(commands, ",") != "mosquitto_sub,mosquitto_pub" {
		t.Errorf("Describe() declares clients %q, want mosquitto_sub then mosquitto_pub", commands)
	}
	if meta.Demo == nil {
		t.Error("Describe() declares no demo")
	}
	if _, err := d.ParseConnection(nil); err == nil {
		t.Error("ParseConnection(nil) succeeded")
	}
	if _, _, err := d.ParseRole(nil); err == nil {
		t.Error("ParseRole(nil) succeeded")
	}
}

func FuzzParseRole(f *testing.F) {
	for _, s := range []string{
		`acls: [{type: publishClientSend, topic: "sensors/#", allow: true}]`,
		`acls: [{type: subscribePattern, topic: "+/x", allow: true, priority: 3}]`,
		`acls: [{type: publishClientSend, topic: "$CONTROL/#", allow: true}]`,
		`acls: [{type: publishClientSend, topic: "$control/dynamic-security/v1", allow: true}]`,
		`acls: [{type: subscribeLiteral, topic: "a/#/b", allow: true}]`,
		`roles: [readers, cb_x]`,
		`{acls: [{type: unsubscribePattern, topic: "#", allow: false}], roles: [r]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		got, _, err := mqtt.Driver{}.ParseRole(plugintest.Decoder(src))
		if err != nil {
			return
		}
		if len(got.ACLs) == 0 && len(got.Roles) == 0 {
			t.Fatalf("ParseRole(%q) accepted a role with neither ACLs nor roles", src)
		}
		for _, a := range got.ACLs {
			first, _, _ := strings.Cut(a.Topic, "/")
			if strings.EqualFold(first, "$CONTROL") {
				t.Fatalf("ParseRole(%q) accepted an ACL on %q", src, a.Topic)
			}
			if a.Topic == "" || a.Priority > mqtt.MaxPriority || a.Priority < -mqtt.MaxPriority {
				t.Fatalf("ParseRole(%q) accepted ACL %+v", src, a)
			}
			for i, l := range strings.Split(a.Topic, "/") {
				if strings.ContainsAny(l, "+#") && l != "+" && l != "#" || l == "#" && i != strings.Count(a.Topic, "/") {
					t.Fatalf("ParseRole(%q) accepted topic filter %q", src, a.Topic)
				}
			}
		}
		for _, r := range got.Roles {
			if r == "" || strings.HasPrefix(r, "cb_") {
				t.Fatalf("ParseRole(%q) accepted role %q", src, r)
			}
		}
	})
}
