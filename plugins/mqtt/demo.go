package mqtt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Where `credbroker dev` looks for its demo broker, and the variables that
// move it: by default the broker .ci/mosquitto-dynsec starts.
const (
	// DevURLEnv overrides the demo broker's URL.
	DevURLEnv = "CREDBROKER_DEV_MQTT_URL"
	// DevAdminUserEnv overrides the demo broker's dynsec admin.
	DevAdminUserEnv = "CREDBROKER_DEV_MQTT_ADMIN_USER"
	// DevAdminPasswordEnv holds the demo admin's password; without it, the
	// password is read from DefaultAdminPasswordFile.
	DevAdminPasswordEnv = "CREDBROKER_DEV_MQTT_ADMIN_PASSWORD"

	// DefaultURL is where .ci/mosquitto-dynsec runs its broker.
	DefaultURL = "tcp://127.0.0.1:1885"
	// DefaultAdminUser is the dynsec admin .ci/mosquitto-dynsec makes.
	DefaultAdminUser = "credbroker-admin"
	// DefaultAdminPasswordFile is where .ci/mosquitto-dynsec keeps that
	// admin's password.
	DefaultAdminPasswordFile = "/tmp/credbroker-mosquitto/admin-password"
)

// envNames are the variables of an issued credential, in the order they are
// best shown.
var envNames = []string{"MQTT_HOST", "MQTT_PORT", "MQTT_TLS", "MQTT_USERNAME", "MQTT_PASSWORD", "MQTT_URL"}

// Describe declares the credential's variables, the demo backend and the
// clients `credbroker connect` opens: mosquitto_sub, else mosquitto_pub.
// They take a password only with -P (or in -L's URL), where every local user
// can read it in the process list, or from their options file
// ($XDG_CONFIG_HOME/mosquitto_sub, …), so the password goes into that file
// ([plugins.Client.Files]) and never onto the command line. To a TLS
// broker they connect over TLS (see [mosquittoClient]).
func (Driver) Describe() plugins.Metadata {
	return plugins.Metadata{
		Clients: []plugins.Client{mosquittoClient("mosquitto_sub"), mosquittoClient("mosquitto_pub")},
		Env:     envNames,
		Demo:    &plugins.Demo{Prepare: prepareDemo},
	}
}

// mosquittoClient is one of Mosquitto's command-line clients, pointed at the
// credential's broker and user, with the password in its options file.
//
// Unless MQTT_TLS is "0" (a plain-text broker), the client gets
// --tls-use-os-certs, which turns TLS on and trusts the system's CAs: told
// only -h and -p, mosquitto_sub would send its CONNECT, password and all,
// in clear to the TLS port before the broker drops it. A credential
// without MQTT_TLS, or with another value, gets TLS too: against a plain
// broker that fails the handshake and sends nothing. The broker's
// certificate must hold MQTT_HOST; a private CA takes `-- --cafile FILE`.
// MQTT_URL, which holds the password, is never looked at.
func mosquittoClient(command string) plugins.Client {
	return plugins.Client{
		Command: command,
		Args: func(env map[string]string) []string {
			args := []string{"-h", env["MQTT_HOST"], "-p", env["MQTT_PORT"], "-u", env["MQTT_USERNAME"]}
			if env["MQTT_TLS"] != "0" {
				args = append(args, "--tls-use-os-certs")
			}
			return args
		},
		Files: func(env map[string]string) map[string]string {
			return map[string]string{command: "-P " + env["MQTT_PASSWORD"] + "\n"}
		},
	}
}

// prepareDemo checks that the demo broker answers and that its admin may
// administer dynsec. There is nothing to make: the demo role's ACLs live in
// the role the plugin makes for each client.
func prepareDemo(ctx context.Context) (plugins.DemoBackend, error) {
	rawURL := cmp.Or(os.Getenv(DevURLEnv), DefaultURL)
	user := cmp.Or(os.Getenv(DevAdminUserEnv), DefaultAdminUser)
	pw := os.Getenv(DevAdminPasswordEnv)
	if pw == "" {
		b, err := os.ReadFile(DefaultAdminPasswordFile)
		if err != nil {
			return plugins.DemoBackend{}, fmt.Errorf("no admin password: set %s, or run .ci/mosquitto-dynsec, "+
				"which writes %s", DevAdminPasswordEnv, DefaultAdminPasswordFile)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	}
	if pw == "" {
		return plugins.DemoBackend{}, errors.New("the demo broker's admin password is empty")
	}
	c := &Connection{URL: rawURL, Username: user, Password: secret.EnvRef(DevAdminPasswordEnv)}
	p, err := open(ctx, c, secret.New(pw))
	if err != nil {
		return plugins.DemoBackend{}, plugins.Sanitize(err, secret.New(pw))
	}
	_ = p.Close()
	return plugins.DemoBackend{
		Connection: fmt.Sprintf("{url: %q, username: %q, password: %q}", rawURL, user, "env:"+DevAdminPasswordEnv),
		Role: `{acls: [{type: publishClientSend, topic: "demo/#", allow: true}, ` +
			`{type: subscribePattern, topic: "demo/#", allow: true}]}`,
		Env: map[string]string{DevAdminPasswordEnv: pw},
		// connect opens mosquitto_sub with the password in its options
		// file, never on its command line.
		Try: `./bin/credbroker connect demo-mqtt -- -t 'demo/#' -v   # mosquitto_sub on demo/#, revoked when you quit`,
	}, nil
}
