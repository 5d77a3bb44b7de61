package mqtt

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Connection is a backend's `connection:` section: how credbroker reaches
// the broker as the dynamic-security admin.
type Connection struct {
	// URL is the broker's address: tcp://host[:port] or mqtt://host[:port]
	// in plain text (default port 1883), ssl://, tls:// or mqtts:// over TLS
	// (default port 8883). Nothing else: no credentials, path or query.
	// Required.
	URL string `yaml:"url"`
	// Username is the dynsec client credbroker logs in as; its roles must
	// let it publish to $CONTROL/dynamic-security/v1 and subscribe to
	// $CONTROL/dynamic-security/v1/response, as the admin that
	// `mosquitto_ctrl dynsec init` makes can. Required.
	Username string `yaml:"username"`
	// Password references (env:NAME or file:/path) the admin's password.
	// Required; resolved when the backend is opened, never when parsed.
	Password secret.Ref `yaml:"password"`
	// TLS is how the broker's certificate is checked, for a TLS URL only.
	TLS TLS `yaml:"tls"`
	// ClientIDPrefix starts the MQTT client id of the admin connection,
	// which ends in random characters so that no issued credential can
	// guess it and take the admin's session over. Default: "credbroker-".
	ClientIDPrefix string `yaml:"client_id_prefix"`
}

// TLS is the `tls:` part of a connection section.
type TLS struct {
	// CAFile is a PEM file of the certificate authorities that sign the
	// broker's certificate. Default: the system's roots. Read when the
	// backend is opened.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the broker's certificate must hold. Default:
	// the URL's host.
	ServerName string `yaml:"server_name"`
}

// defaultClientIDPrefix starts the admin's client id when the connection
// section names no prefix.
const defaultClientIDPrefix = "credbroker-"

// maxClientIDPrefix is the longest client_id_prefix: with the random part,
// the client id stays short enough for any broker's logs.
const maxClientIDPrefix = 32

// endpoint is a validated broker URL.
type endpoint struct {
	tls  bool
	host string // without brackets
	port string
}

// addr returns host:port.
func (e endpoint) addr() string { return net.JoinHostPort(e.host, e.port) }

// dialURL is the URL the MQTT client library dials.
func (e endpoint) dialURL() string {
	if e.tls {
		return "ssl://" + e.addr()
	}
	return "tcp://" + e.addr()
}

// parseURL validates a connection URL.
func parseURL(raw string) (endpoint, error) {
	if raw == "" {
		return endpoint{}, errors.New(`required: the broker's address, such as "tcp://127.0.0.1:1883" or "mqtts://broker.internal:8883"`)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // url.Error quotes the URL, which might hold a password
		}
		return endpoint{}, fmt.Errorf("not a URL: %w", err)
	}
	var e endpoint
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
		e.port = "1883"
	case "ssl", "tls", "mqtts":
		e.tls, e.port = true, "8883"
	default:
		return endpoint{}, fmt.Errorf("scheme %q: want tcp:// or mqtt:// (plain text), ssl://, tls:// or mqtts:// (TLS)", u.Scheme)
	}
	switch {
	case u.User != nil:
		return endpoint{}, errors.New("holds credentials: give them as username and password (a reference) instead")
	case u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return endpoint{}, errors.New("want scheme://host[:port] and nothing after it")
	case u.Hostname() == "":
		return endpoint{}, errors.New("no host")
	}
	e.host = u.Hostname()
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return endpoint{}, fmt.Errorf("%q is not a TCP port", p)
		}
		e.port = p
	} else if strings.HasSuffix(u.Host, ":") {
		return endpoint{}, errors.New("empty port")
	}
	return e, nil
}

// validate checks c and returns its endpoint.
func (c *Connection) validate() (endpoint, error) {
	var errs []error
	e, err := parseURL(c.URL)
	if err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	switch {
	case c.Username == "":
		errs = append(errs, errors.New("username: required: the dynsec admin credbroker logs in as"))
	case !utf8.ValidString(c.Username) || strings.ContainsFunc(c.Username, unicode.IsControl):
		errs = append(errs, errors.New("username: not valid UTF-8 or holds a control character"))
	}
	if c.Password.IsZero() {
		errs = append(errs, errors.New("password: required: a reference to the admin's password, env:NAME or file:/path"))
	}
	if err == nil && !e.tls && c.TLS != (TLS{}) {
		errs = append(errs, errors.New("tls: set for a plain-text URL: use ssl:// or mqtts://, or remove tls"))
	}
	if p := c.ClientIDPrefix; p != "" {
		if len(p) > maxClientIDPrefix || strings.IndexFunc(p, notIDChar) >= 0 {
			errs = append(errs, fmt.Errorf("client_id_prefix: want at most %d letters, digits, '-', '_' and '.'", maxClientIDPrefix))
		}
	}
	return e, errors.Join(errs...)
}

func notIDChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

// The dynsec ACL types, as the plugin names them.
const (
	PublishClientSend    = "publishClientSend"
	PublishClientReceive = "publishClientReceive"
	SubscribeLiteral     = "subscribeLiteral"
	SubscribePattern     = "subscribePattern"
	UnsubscribeLiteral   = "unsubscribeLiteral"
	UnsubscribePattern   = "unsubscribePattern"
)

// aclTypes are the ACL types a role may list.
var aclTypes = []string{PublishClientSend, PublishClientReceive, SubscribeLiteral, SubscribePattern, UnsubscribeLiteral, UnsubscribePattern}

// MaxPriority bounds an ACL's priority either way. credbroker's own denials
// of $CONTROL sit above it, so no ACL of a role can come before them.
const MaxPriority = 1_000_000

// Role is a role's `mqtt:` section: what an issued client may do. It holds
// ACLs, which credbroker puts in a dynsec role of the client's own, and
// existing dynsec roles the client gets as well; at least one of the two.
type Role struct {
	// ACLs are the client's own ACLs, checked before those of Roles.
	ACLs []ACL
	// Roles are existing dynsec roles, in order of precedence: the first
	// listed is checked first. None may start with cb_ (credbroker's own
	// roles), and at start none may let a holder publish to, or
	// subscribe to, $CONTROL topics.
	Roles []string
}

// ACL is one dynsec ACL.
type ACL struct {
	// Type is one of publishClientSend, publishClientReceive,
	// subscribeLiteral, subscribePattern, unsubscribeLiteral and
	// unsubscribePattern.
	Type string
	// Topic is a topic filter: + and # only as whole levels, # last. None
	// may start with $CONTROL: credbroker denies every issued client the
	// $CONTROL topics itself.
	Topic string
	// Allow says whether the ACL allows or denies.
	Allow bool
	// Priority orders a role's ACLs, highest first; within ±MaxPriority.
	Priority int
}

// roleYAML is the role section as written; allow is required.
type roleYAML struct {
	ACLs  []aclYAML `yaml:"acls"`
	Roles []string  `yaml:"roles"`
}

type aclYAML struct {
	Type     string `yaml:"type"`
	Topic    string `yaml:"topic"`
	Allow    *bool  `yaml:"allow"`
	Priority int    `yaml:"priority"`
}

// role converts the decoded section, checked.
func (y *roleYAML) role() (*Role, []string, error) {
	r := &Role{Roles: y.Roles}
	var errs []error
	for i, a := range y.ACLs {
		if a.Allow == nil {
			errs = append(errs, fmt.Errorf("acls[%d]: allow: required: true or false", i))
			continue
		}
		r.ACLs = append(r.ACLs, ACL{Type: a.Type, Topic: a.Topic, Allow: *a.Allow, Priority: a.Priority})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	warnings, err := r.check()
	if err != nil {
		return nil, nil, err
	}
	return r, warnings, nil
}

// check validates r; a Role can be built by hand, so Create checks again.
func (r *Role) check() (warnings []string, err error) {
	if len(r.ACLs) == 0 && len(r.Roles) == 0 {
		return nil, errors.New(`acls or roles: required: the client's own ACLs, such as ` +
			`[{type: publishClientSend, topic: "sensors/#", allow: true}], and/or existing dynsec roles`)
	}
	var errs []error
	type key struct{ typ, topic string }
	seen := make(map[key]int)
	allows := false
	for i, a := range r.ACLs {
		if err := a.check(); err != nil {
			errs = append(errs, fmt.Errorf("acls[%d]: %w", i, err))
			continue
		}
		k := key{a.Type, a.Topic}
		if j, dup := seen[k]; dup {
			errs = append(errs, fmt.Errorf("acls[%d]: the same type and topic as acls[%d]: dynsec keeps one of them", i, j))
			continue
		}
		seen[k] = i
		allows = allows || a.Allow
	}
	for i, name := range r.Roles {
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("roles[%d]: empty role name", i))
		case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
			errs = append(errs, fmt.Errorf("roles[%d]: not valid UTF-8 or holds a control character", i))
		case strings.HasPrefix(name, plugins.ManagedPrefix):
			errs = append(errs, fmt.Errorf("roles[%d]: %q: roles starting with %s are the ones credbroker makes for each client", i, name, plugins.ManagedPrefix))
		case slices.Index(r.Roles, name) < i:
			errs = append(errs, fmt.Errorf("roles[%d]: %q is listed twice", i, name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if !allows && len(r.Roles) == 0 {
		warnings = append(warnings, "every ACL denies and no roles are named: an issued client may only do "+
			"what the broker's default ACL access allows")
	}
	return warnings, nil
}

func (a ACL) check() error {
	if !slices.Contains(aclTypes, a.Type) {
		return fmt.Errorf("type: %q: want one of %s", a.Type, strings.Join(aclTypes, ", "))
	}
	if err := checkTopicFilter(a.Topic); err != nil {
		return fmt.Errorf("topic: %w", err)
	}
	if isControl(a.Topic) {
		return fmt.Errorf("topic: %q: a $CONTROL topic: publishing there administers the broker (dynamic security "+
			"takes its commands on $CONTROL/dynamic-security/v1), and its answers are published there; "+
			"credbroker denies every issued client all $CONTROL topics itself", a.Topic)
	}
	if a.Priority < -MaxPriority || a.Priority > MaxPriority {
		return fmt.Errorf("priority: %d: want within ±%d", a.Priority, MaxPriority)
	}
	return nil
}

// maxTopicLen is the longest MQTT topic: a UTF-8 string of at most 65535
// bytes.
const maxTopicLen = 65535

// checkTopicFilter accepts what Mosquitto's mosquitto_sub_topic_check
// accepts, as dynsec checks an ACL's topic: a non-empty UTF-8 topic filter
// without control characters in which + and # take whole levels and # is
// the last.
func checkTopicFilter(t string) error {
	switch {
	case t == "":
		return errors.New("empty topic")
	case len(t) > maxTopicLen:
		return fmt.Errorf("%d bytes: MQTT topics are at most %d", len(t), maxTopicLen)
	case !utf8.ValidString(t):
		return errors.New("not valid UTF-8")
	case strings.ContainsFunc(t, unicode.IsControl):
		return errors.New("holds a control character")
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("%q: # must be the last level", t)
		case l != "#" && l != "+" && strings.ContainsAny(l, "#+"):
			return fmt.Errorf("%q: + and # must take a whole level, as in a/+/c or a/#", t)
		}
	}
	return nil
}

// controlLevel is the first level of every topic Mosquitto handles as a
// command to a plugin ($CONTROL/<feature>/<version>).
const controlLevel = "$CONTROL"

// isControl reports whether a topic filter names $CONTROL topics: its first
// level is $CONTROL, compared without case, to refuse more rather than less.
//
// For publishing that is every filter that can match: dynsec matches a
// publish ACL with mosquitto_topic_matches_sub, under which a filter
// starting with + or # matches no topic starting with $, as MQTT requires.
// A subscribePattern of # or +/… does match a subscription to a $CONTROL
// topic (dynsec's sub_acl_check has no rule for $), which is why every
// issued client's own role denies subscribePattern $CONTROL/# (and
// publishClientSend $CONTROL/#) above every other ACL it has or gets.
func isControl(filter string) bool {
	first, _, _ := strings.Cut(filter, "/")
	return strings.EqualFold(first, controlLevel)
}

var _ plugins.AdminIdentifier = (*Connection)(nil)

// AdminIdentity returns the broker's host:port (default ports filled in) and
// the dynsec admin's username.
func (c *Connection) AdminIdentity() plugins.AdminIdentity {
	id := plugins.AdminIdentity{User: c.Username}
	if e, err := parseURL(c.URL); err == nil {
		id.Addrs = []string{plugins.HostPort(e.host, e.port)}
	}
	return id
}
