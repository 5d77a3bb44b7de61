package rabbitmq

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// The demo backend `credbroker dev` adds when a RabbitMQ with the management
// plugin answers on this machine.
const (
	// demoManagementURLEnv names the variable that says where the demo's
	// management API is, with the admin's user:password in it.
	demoManagementURLEnv = "CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL"
	// defaultDemoManagementURL is the management API of a local node with
	// its default guest user, which may log in from loopback only.
	defaultDemoManagementURL = "http://guest:guest@127.0.0.1:15672"
	// demoAMQPURLEnv names the variable that says where issued demo
	// credentials point.
	demoAMQPURLEnv     = "CREDBROKER_DEV_RABBITMQ_AMQP_URL"
	defaultDemoAMQPURL = "amqp://127.0.0.1:5672"
	// demoPasswordEnv is the variable `credbroker dev` sets to the admin's
	// password, which the demo's connection refers to.
	demoPasswordEnv = "CREDBROKER_DEV_RABBITMQ_PASSWORD"
	// demoVhost is the vhost Prepare makes for the demo role.
	demoVhost = "credbroker-demo"
	// demoRole may configure, write and read the demo.* queues and
	// exchanges of demoVhost.
	demoRole = `{vhosts: {credbroker-demo: {configure: "^demo\\.", write: "^demo\\.", read: "^demo\\."}}}`
	demoTry  = `./bin/credbroker creds demo-rabbitmq -o uri        # an amqp:// login for vhost credbroker-demo`
)

// prepareDemo opens the plugin on the management API at
// $CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL (which checks that it answers and
// that its user is tagged administrator), checks that something listens at
// $CREDBROKER_DEV_RABBITMQ_AMQP_URL, and creates the vhost credbroker-demo
// if it is missing.
func prepareDemo(ctx context.Context) (plugins.DemoBackend, error) {
	mgmt := cmp.Or(os.Getenv(demoManagementURLEnv), defaultDemoManagementURL)
	u, err := url.Parse(mgmt)
	if err != nil {
		return plugins.DemoBackend{}, fmt.Errorf("%s: %w", demoManagementURLEnv, urlError(err))
	}
	pass, ok := u.User.Password()
	if !ok || u.User.Username() == "" {
		return plugins.DemoBackend{}, fmt.Errorf("%s: want http://user:password@host:port, with the credentials of a user tagged administrator", demoManagementURLEnv)
	}
	password := secret.New(pass)
	c := Connection{
		Username: u.User.Username(),
		Password: secret.EnvRef(demoPasswordEnv),
		AMQPURL:  cmp.Or(os.Getenv(demoAMQPURLEnv), defaultDemoAMQPURL),
	}
	u.User = nil
	c.ManagementURL = u.String()
	if err := c.validate(); err != nil {
		return plugins.DemoBackend{}, fmt.Errorf("%s or %s: %w", demoManagementURLEnv, demoAMQPURLEnv, err)
	}

	p, err := openWith(ctx, &c, password)
	if err != nil {
		return plugins.DemoBackend{}, fmt.Errorf("no usable RabbitMQ management API at %s "+
			"(rabbitmq-plugins enable rabbitmq_management; %s says where): %w", c.ManagementURL, demoManagementURLEnv, err)
	}
	defer func() { _ = p.Close() }()
	var d net.Dialer
	amqpConn, err := d.DialContext(ctx, "tcp", p.target.hostPort())
	if err != nil {
		return plugins.DemoBackend{}, fmt.Errorf("nothing answers at %s for AMQP (%s says where)", c.AMQPURL, demoAMQPURLEnv)
	}
	_ = amqpConn.Close()
	client, cancel := p.client(ctx)
	defer cancel()
	if _, err := done(client.PutVhost(demoVhost, rabbithole.VhostSettings{Description: "credbroker dev demo"})); err != nil {
		return plugins.DemoBackend{}, plugins.Sanitize(fmt.Errorf("create vhost %s: %w", demoVhost, err), password)
	}
	return plugins.DemoBackend{
		// The escapes %q writes (\", \\, \n, \x…, \u…) mean the same
		// in a YAML double-quoted string.
		Connection: fmt.Sprintf("{management_url: %q, username: %q, password: env:%s, amqp_url: %q}",
			c.ManagementURL, c.Username, demoPasswordEnv, c.AMQPURL),
		Role: demoRole,
		Env:  map[string]string{demoPasswordEnv: pass},
		Try:  demoTry,
	}, nil
}
