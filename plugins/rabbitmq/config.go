package rabbitmq

import (
	"errors"
	"fmt"
	"github.com/credbroker/credbroker/plugins"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"github.com/credbroker/credbroker/secret"
)

// Connection is a backend's `connection:` section.
type Connection struct {
	// ManagementURL is the base URL of the management HTTP API, http:// or
	// https://, without credentials (e.g. http://127.0.0.1:15672, or
	// https://mq.internal/rabbitmq behind a proxy). Required.
	ManagementURL string `yaml:"management_url"`
	// Username is the admin user of the management API; it needs the
	// administrator tag. Required.
	Username string `yaml:"username"`
	// Password references (env:NAME or file:/path) the admin's password.
	// Required; resolved when the backend is opened, never when parsed.
	Password secret.Ref `yaml:"password"`
	// AMQPURL is where issued credentials point, without credentials or
	// vhost: amqp://host[:port] (port 5672 by default) or amqps://host[:port]
	// (5671), as workloads reach the broker. Its scheme is the issued URI's.
	// Required.
	AMQPURL string `yaml:"amqp_url"`
	// TLS configures how the plugin verifies the management API's
	// certificate when ManagementURL is https. Optional: without it the
	// system's roots and the URL's host are used. The plugin itself opens no
	// AMQP connection, so with amqps:// it changes only what is validated:
	// TLS may be set when either URL uses TLS.
	TLS *TLS `yaml:"tls"`

	// adminPassword, when set, replaces the password the reference names:
	// the admin password the broker rotated (see [Driver.WithAdminPassword]).
	adminPassword secret.Value
}

// TLS is the `tls:` part of a connection section.
type TLS struct {
	// CAFile is an absolute path to PEM certificates to trust instead of the
	// system's roots. Read when the backend is opened.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name to verify in the server's certificate, when it
	// is not the URL's host.
	ServerName string `yaml:"server_name"`
}

// target is where issued credentials point, parsed from AMQPURL.
type target struct {
	scheme, host, port string
}

func (c *Connection) validate() error {
	var errs []error
	mgmt, err := parseManagementURL(c.ManagementURL)
	if err != nil {
		errs = append(errs, err)
	} else {
		c.ManagementURL = mgmt
	}
	if strings.TrimSpace(c.Username) == "" {
		errs = append(errs, errors.New("username: required: the admin user, tagged administrator"))
	}
	if c.Password.IsZero() {
		errs = append(errs, errors.New(`password: required: a reference such as "env:RABBITMQ_ADMIN_PASSWORD"`))
	}
	if _, err := parseAMQPURL(c.AMQPURL); err != nil {
		errs = append(errs, err)
	}
	if c.TLS != nil {
		if c.TLS.CAFile != "" && !filepath.IsAbs(c.TLS.CAFile) {
			errs = append(errs, fmt.Errorf("tls.ca_file: %s: the path must be absolute", c.TLS.CAFile))
		}
		if !strings.HasPrefix(c.ManagementURL, "https://") && !strings.HasPrefix(c.AMQPURL, "amqps://") {
			errs = append(errs, errors.New("tls: set, but neither management_url (https://) nor amqp_url (amqps://) uses TLS"))
		}
	}
	return errors.Join(errs...)
}

// parseManagementURL checks the management API's base URL and returns it
// without a trailing slash, as rabbit-hole appends "/api/…" to it.
func parseManagementURL(s string) (string, error) {
	const field = "management_url"
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("%s: required, e.g. http://127.0.0.1:15672", field)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, urlError(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%s: scheme %q: want http or https", field, u.Scheme)
	case u.User != nil:
		return "", fmt.Errorf("%s: must not hold credentials: use username and password", field)
	case u.Host == "":
		return "", fmt.Errorf("%s: no host", field)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%s: must not have a query or fragment", field)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// parseAMQPURL checks amqp_url and returns where issued credentials point.
func parseAMQPURL(s string) (target, error) {
	const field = "amqp_url"
	if strings.TrimSpace(s) == "" {
		return target{}, fmt.Errorf("%s: required, e.g. amqp://127.0.0.1:5672", field)
	}
	u, err := url.Parse(s)
	if err != nil {
		return target{}, fmt.Errorf("%s: %w", field, urlError(err))
	}
	port := ""
	switch u.Scheme {
	case "amqp":
		port = "5672"
	case "amqps":
		port = "5671"
	default:
		return target{}, fmt.Errorf("%s: scheme %q: want amqp or amqps", field, u.Scheme)
	}
	switch {
	case u.User != nil:
		return target{}, fmt.Errorf("%s: must not hold credentials: each issued credential brings its own", field)
	case u.Hostname() == "":
		return target{}, fmt.Errorf("%s: no host", field)
	case u.Path != "" && u.Path != "/":
		return target{}, fmt.Errorf("%s: must not name a vhost: the role's vhosts decide it", field)
	case u.RawQuery != "" || u.Fragment != "":
		return target{}, fmt.Errorf("%s: must not have a query or fragment", field)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return target{}, fmt.Errorf("%s: port %q: not a TCP port", field, p)
		}
		port = p
	}
	return target{scheme: u.Scheme, host: u.Hostname(), port: port}, nil
}

// urlError drops the URL that url.Parse quotes in its errors: it may hold a
// password someone wrote where it does not belong.
func urlError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

// hostPort joins the target's host and port.
func (t target) hostPort() string { return net.JoinHostPort(t.host, t.port) }

// Role is a role's `rabbitmq:` section: what an issued user may do.
type Role struct {
	// Vhosts maps each vhost the user may use to its permissions there.
	// Required: at least one. The issued URI points at the first vhost in
	// sorted order.
	Vhosts map[string]Permissions `yaml:"vhosts"`
	// TopicPermissions restrict the routing keys the user may publish with
	// (write) and bind with (read) on topic exchanges. Optional.
	TopicPermissions []TopicPermission `yaml:"topic_permissions"`
	// Tags are RabbitMQ user tags (management, or a tag of your own).
	// administrator, impersonator, monitoring and policymaker are refused:
	// each lets the user create users, forge senders, see other users'
	// connections or change policies. credbroker is always added: it marks
	// the users the broker made.
	Tags []string `yaml:"tags"`
}

// Permissions are a user's permissions in one vhost: regular expressions
// that the names of the queues and exchanges it may configure, write to and
// read from must match. RabbitMQ matches them anywhere in a name unless they
// are anchored (^…$); "" matches nothing.
type Permissions struct {
	// Configure covers declaring and deleting the queues and exchanges whose
	// names match. It must match no name starting with "amq.", RabbitMQ's own
	// (amq.direct, amq.rabbitmq.trace, server-named amq.gen-… queues):
	// anchor it to the role's own prefix, such as ^orders\.
	Configure string `yaml:"configure"`
	// Write covers publishing to matching exchanges and binding to matching
	// queues and exchanges (as the destination).
	Write string `yaml:"write"`
	// Read covers consuming from and purging matching queues and binding
	// from matching exchanges (as the source).
	Read string `yaml:"read"`
}

// TopicPermission restricts the routing keys of one topic exchange in one
// vhost with regular expressions. The variables {username}, {vhost} and
// {client_id} in them are expanded by RabbitMQ.
type TopicPermission struct {
	// Vhost must be one of the role's vhosts.
	Vhost string `yaml:"vhost"`
	// Exchange is the name of a topic exchange (not a pattern).
	Exchange string `yaml:"exchange"`
	// Write is what routing keys of messages published to Exchange must match.
	Write string `yaml:"write"`
	// Read is what binding keys of queues bound to Exchange must match.
	Read string `yaml:"read"`
}

// markerTag is the user tag that marks the users this broker made; ListManaged
// lists by it and Revoke refuses users without it.
const markerTag = "credbroker"

// refusedTags are user tags a role may not give: each lets an issued user
// step outside its permissions, or see or change what is not its own.
var refusedTags = map[string]string{
	"administrator": "it gives full control of the node: every vhost, user and permission",
	"impersonator":  "it lets the user publish messages with any user_id, forging who sent them",
	"monitoring":    "it lets the user see every vhost's connections, channels and queues, other users' included",
	"policymaker":   "it lets the user set policies and parameters (federation, shovels) in its vhosts, which outlive its lease",
}

// rawRole is what a `rabbitmq:` section decodes into: pointers tell a missing
// regular expression from "", which is a valid one (it matches nothing).
type rawRole struct {
	Vhosts           map[string]*rawPermissions `yaml:"vhosts"`
	TopicPermissions []rawTopicPermission       `yaml:"topic_permissions"`
	Tags             []string                   `yaml:"tags"`
}

type rawPermissions struct {
	Configure *string `yaml:"configure"`
	Write     *string `yaml:"write"`
	Read      *string `yaml:"read"`
}

type rawTopicPermission struct {
	Vhost    string  `yaml:"vhost"`
	Exchange string  `yaml:"exchange"`
	Write    *string `yaml:"write"`
	Read     *string `yaml:"read"`
}

// role validates r and returns the Role it describes, with tags
// deduplicated and without the marker tag, which Create adds.
func (r *rawRole) role() (*Role, []string, error) {
	var errs []error
	var warnings []string
	regex := func(field string, p *string) string {
		if p == nil {
			errs = append(errs, fmt.Errorf(`%s: required (write "" to allow nothing)`, field))
			return ""
		}
		warning, err := checkRegexp(field, *p)
		errs = append(errs, err)
		if warning != "" {
			warnings = append(warnings, warning)
		}
		return *p
	}
	configure := func(field string, p *string) string {
		if p == nil {
			return regex(field, p)
		}
		if _, err := checkRegexp(field, *p); err != nil {
			errs = append(errs, err)
			return ""
		}
		errs = append(errs, checkConfigure(field, *p))
		return *p
	}

	role := &Role{Vhosts: make(map[string]Permissions, len(r.Vhosts))}
	if len(r.Vhosts) == 0 {
		errs = append(errs, errors.New("vhosts: required: a map from vhost name to {configure, write, read}"))
	}
	for _, vhost := range slices.Sorted(maps.Keys(r.Vhosts)) {
		field := fmt.Sprintf("vhosts[%q]", vhost)
		if strings.TrimSpace(vhost) == "" {
			errs = append(errs, fmt.Errorf("%s: empty vhost name", field))
			continue
		}
		p := r.Vhosts[vhost]
		if p == nil {
			errs = append(errs, fmt.Errorf("%s: required: {configure, write, read}", field))
			continue
		}
		role.Vhosts[vhost] = Permissions{
			Configure: configure(field+".configure", p.Configure),
			Write:     regex(field+".write", p.Write),
			Read:      regex(field+".read", p.Read),
		}
	}

	type key struct{ vhost, exchange string }
	seen := make(map[key]bool)
	for i, tp := range r.TopicPermissions {
		field := fmt.Sprintf("topic_permissions[%d]", i)
		switch _, ok := r.Vhosts[tp.Vhost]; {
		case tp.Vhost == "":
			errs = append(errs, fmt.Errorf("%s.vhost: required", field))
		case !ok:
			errs = append(errs, fmt.Errorf("%s.vhost: %q is not one of the role's vhosts", field, tp.Vhost))
		}
		if tp.Exchange == "" {
			errs = append(errs, fmt.Errorf("%s.exchange: required: the name of a topic exchange", field))
		}
		k := key{tp.Vhost, tp.Exchange}
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s: a second entry for exchange %q in vhost %q", field, tp.Exchange, tp.Vhost))
		}
		seen[k] = true
		role.TopicPermissions = append(role.TopicPermissions, TopicPermission{
			Vhost:    tp.Vhost,
			Exchange: tp.Exchange,
			Write:    regex(field+".write", tp.Write),
			Read:     regex(field+".read", tp.Read),
		})
	}

	for i, tag := range r.Tags {
		field := fmt.Sprintf("tags[%d]", i)
		lower := strings.ToLower(tag)
		switch {
		case tag == "":
			errs = append(errs, fmt.Errorf("%s: empty tag", field))
		case strings.ContainsAny(tag, ", \t\r\n"):
			errs = append(errs, fmt.Errorf("%s: %q: a tag holds no commas or blanks", field, tag))
		case refusedTags[lower] != "":
			errs = append(errs, fmt.Errorf("%s: %s is refused: %s; give management (the user's own vhosts "+
				"in the management UI) or no tag", field, tag, refusedTags[lower]))
		case lower == markerTag || slices.Contains(role.Tags, tag):
			// The marker is added below; a duplicate changes nothing.
		default:
			role.Tags = append(role.Tags, tag)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return role, warnings, nil
}

// checkRegexp compiles pattern with Go's regexp package as a sanity check.
// RabbitMQ uses Erlang's PCRE dialect: most patterns mean the same in both,
// but PCRE-only syntax (lookarounds, backreferences) is refused here. It
// warns about a pattern that is not anchored, which RabbitMQ matches
// anywhere in a name.
func checkRegexp(field, pattern string) (warning string, err error) {
	if _, err := regexp.Compile(pattern); err != nil {
		var reErr *syntax.Error
		if errors.As(err, &reErr) {
			err = fmt.Errorf("%s at %q", reErr.Code, reErr.Expr)
		}
		return "", fmt.Errorf("%s: %q is not a valid regular expression: %w", field, pattern, err)
	}
	if pattern != "" && pattern != ".*" && !strings.HasPrefix(pattern, "^") {
		return fmt.Sprintf("%s: %q is not anchored: RabbitMQ matches it anywhere in a name; write ^…$ to match whole names", field, pattern), nil
	}
	return "", nil
}

// checkConfigure refuses a configure regexp that matches a name starting
// with "amq." anywhere, as RabbitMQ matches it.
func checkConfigure(field, pattern string) error {
	if !matchesSystemName(pattern) {
		return nil
	}
	example := ""
	if n := systemNameMatched(pattern); n != "" {
		example = " such as " + n
	}
	return fmt.Errorf(`%s: %q matches names starting with amq.%s, RabbitMQ's own exchanges and server-named `+
		`queues (RabbitMQ matches a permission anywhere in a name): anchor it to the role's own prefix, `+
		`such as '^orders\.', or write "" to allow no configure`, field, pattern, example)
}

// check is what Create relies on in a Role, for one built by hand rather
// than by ParseRole.
func (r *Role) check() error {
	if len(r.Vhosts) == 0 {
		return errors.New("the role names no vhost")
	}
	for _, vhost := range r.sortedVhosts() {
		if err := checkConfigure(fmt.Sprintf("vhosts[%q].configure", vhost), r.Vhosts[vhost].Configure); err != nil {
			return err
		}
	}
	for _, tag := range r.Tags {
		if why := refusedTags[strings.ToLower(tag)]; why != "" {
			return fmt.Errorf("tag %s is refused: %s", tag, why)
		}
	}
	return nil
}

// userTags are the tags an issued user gets: the role's and the marker.
func (r *Role) userTags() []string {
	tags := slices.DeleteFunc(slices.Clone(r.Tags), func(t string) bool { return strings.EqualFold(t, markerTag) })
	return append(tags, markerTag)
}

// sortedVhosts returns the role's vhosts in sorted order; the first is the
// one issued credentials point at.
func (r *Role) sortedVhosts() []string {
	return slices.Sorted(maps.Keys(r.Vhosts))
}

var _ plugins.AdminIdentifier = (*Connection)(nil)

// AdminIdentity returns the management API's host:port (80 or 443 when the
// URL names no port) and the admin user.
func (c *Connection) AdminIdentity() plugins.AdminIdentity {
	id := plugins.AdminIdentity{User: c.Username}
	if u, err := url.Parse(c.ManagementURL); err == nil && u.Hostname() != "" {
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		id.Addrs = []string{plugins.HostPort(u.Hostname(), port)}
	}
	return id
}
