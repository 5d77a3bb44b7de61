package redis

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/credbroker/credbroker/plugins"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/credbroker/credbroker/secret"
)

// Connection is a backend's `connection:` section. Exactly one of Addr and
// Addrs is set.
type Connection struct {
	// Addr is the host:port of a standalone Redis server.
	Addr string `yaml:"addr"`
	// Addrs are host:port seeds of a Redis Cluster. ACL users are per node,
	// so every user is made on every node the cluster lists, primaries and
	// replicas; the seeds only serve to find them.
	Addrs []string `yaml:"addrs"`
	// Username is the admin's ACL user. Default: the default user.
	Username string `yaml:"username"`
	// Password references (env:NAME or file:/path) the admin's password.
	// Optional; resolved when the backend is opened, never when parsed.
	Password secret.Ref `yaml:"password"`
	// TLS says how to reach the server over TLS. Default: plaintext.
	TLS TLS `yaml:"tls"`

	// adminPassword, when set, replaces the password the reference names:
	// the admin password the broker rotated (see [Driver.WithAdminPassword]).
	adminPassword secret.Value
}

// TLS is the `tls:` part of a connection section.
type TLS struct {
	// Enabled turns TLS on for the admin connection and makes issued
	// credentials rediss:// URLs.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of the certificate authorities that sign the
	// server's certificate. Default: the system's roots. Read when the
	// backend is opened.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the server's certificate must hold. Default:
	// the host of the address dialled.
	ServerName string `yaml:"server_name"`
}

// cluster reports whether c names a Redis Cluster.
func (c *Connection) cluster() bool { return len(c.Addrs) > 0 }

// seeds returns the addresses the plugin dials first.
func (c *Connection) seeds() []string {
	if c.cluster() {
		return c.Addrs
	}
	return []string{c.Addr}
}

func (c *Connection) validate() error {
	var errs []error
	switch {
	case c.Addr != "" && len(c.Addrs) > 0:
		errs = append(errs, errors.New("addr and addrs: give one: addr for a standalone server, addrs for a Redis Cluster"))
	case c.Addr == "" && len(c.Addrs) == 0:
		errs = append(errs, errors.New(`addr or addrs: required: "host:6379", or a list of cluster nodes`))
	case c.Addr != "":
		if err := checkAddr(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("addr: %w", err))
		}
	}
	for i, a := range c.Addrs {
		if err := checkAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("addrs[%d]: %w", i, err))
		} else if slices.Index(c.Addrs, a) < i {
			errs = append(errs, fmt.Errorf("addrs[%d]: %q is listed twice", i, a))
		}
	}
	if strings.ContainsFunc(c.Username, isSpaceOrControl) {
		errs = append(errs, errors.New("username: holds a blank or control character"))
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.ServerName != "") {
		errs = append(errs, errors.New("tls: ca_file or server_name is set but enabled is not: add enabled: true"))
	}
	return errors.Join(errs...)
}

// checkAddr accepts host:port with a non-empty host and a TCP port.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("%q: no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: %q is not a TCP port", addr, port)
	}
	return nil
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// Role is a role's `redis:` section: what an issued user may do.
type Role struct {
	// Rules are ACL rules as ACL SETUSER takes them, one rule an item: key
	// patterns (~orders:*, %R~cache:*, allkeys, resetkeys), channel patterns
	// (&orders:*, allchannels, resetchannels), commands and categories
	// (+@read, -@dangerous, +get, -flushall, allcommands, nocommands) and
	// selectors ("(~audit:* +xadd)"). Rules that touch the user's passwords
	// or state (nopass, >…, <…, #…, !…, resetpass, on, off, reset,
	// clearselectors, skip-sanitize-payload) are refused: credbroker sets
	// those itself. So are rules that grant a command with which the holder
	// could make users, read passwords or keep its user from being revoked
	// (ACL, CONFIG, MODULE, DEBUG, SHUTDOWN, REPLICAOF, MIGRATE, SAVE …, by
	// name, by subcommand or through a category) and the categories @admin,
	// @dangerous and @all (allcommands). Required.
	Rules []string `yaml:"rules"`
}

// check validates the rules without changing r and returns them as they are
// sent to Redis: selectors with their rules separated by single blanks.
func (r *Role) check() ([]string, error) {
	if len(r.Rules) == 0 {
		return nil, errors.New(`rules: required: ACL rules such as ["~orders:*", "+@read"]`)
	}
	var errs []error
	rules := make([]string, len(r.Rules))
	for i, rule := range r.Rules {
		norm, err := checkRule(rule, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("rules[%d]: %q: %w", i, rule, err))
			norm = ""
		}
		rules[i] = norm
	}
	// Rules that failed are "" here, which the simulation skips, so an
	// error names each rule once.
	errs = append(errs, checkGrants(rules))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rules, nil
}

// checkGrants refuses rules (checked, normalised) that grant a refused
// command through a category (+@slow holds CONFIG GET on Redis 7), in the
// user's own rules or in a selector: it plays the rules in order over
// refusedCommands, as Redis would.
func checkGrants(rules []string) error {
	var root []string
	var errs []error
	for i, rule := range rules {
		if !strings.HasPrefix(rule, "(") {
			root = append(root, rule)
			continue
		}
		inner := strings.Fields(rule[1 : len(rule)-1])
		errs = append(errs, simulate(inner, builtinCategories).grantError(fmt.Sprintf("rules[%d]: in the selector, ", i)))
	}
	if err := simulate(root, builtinCategories).grantError(""); err != nil {
		errs = append([]error{fmt.Errorf("rules: %w", err)}, errs...)
	}
	return errors.Join(errs...)
}

// forbiddenRules say why each rule that would weaken or undo the credential
// credbroker sets up is refused. Redis takes them in any case.
var forbiddenRules = map[string]string{
	"nopass":    "would let anyone log in as the issued user with any password",
	"resetpass": "would remove the password credbroker sets, leaving a user nobody can log in as",
	"on":        "credbroker enables the user itself",
	"off":       "would disable the issued user",
	"reset":     "would undo the password and the enabling that credbroker sets before the role's rules",
	"clearselectors": "would silently drop the selectors listed before it; every issued user starts " +
		"with none, so list only the selectors it should have",
	"skip-sanitize-payload": "would let the user RESTORE payloads Redis does not check, which can crash the server",
}

// passwordRulePrefixes are the first bytes of rules that add or remove
// passwords or password hashes.
const passwordRulePrefixes = "><#!"

// checkRule validates one ACL rule and returns it as it is sent to Redis;
// inSelector says it is inside a selector, where only key, channel and
// command rules are allowed.
func checkRule(rule string, inSelector bool) (norm string, err error) {
	lower := strings.ToLower(rule)
	switch {
	case rule == "":
		return "", errors.New("empty rule")
	case forbiddenRules[lower] != "":
		return "", errors.New(forbiddenRules[lower])
	case strings.IndexByte(passwordRulePrefixes, rule[0]) >= 0:
		return "", errors.New("sets or removes a password: credbroker gives the issued user its one password itself")
	case rule[0] == '(':
		if inSelector {
			return "", errors.New("selectors cannot be nested")
		}
		return checkSelector(rule)
	case strings.ContainsFunc(rule, isSpaceOrControl):
		return "", errors.New("holds a blank or control character: give one rule an item")
	}
	switch lower {
	case "allkeys", "resetkeys", "allchannels", "resetchannels", "nocommands":
		return rule, nil
	case "allcommands":
		return "", errors.New(refusedAll)
	case "sanitize-payload":
		if inSelector {
			return "", errors.New("not allowed in a selector")
		}
		return rule, nil
	}
	switch rule[0] {
	case '~', '&':
		if len(rule) == 1 {
			return "", errors.New("empty pattern")
		}
		return rule, nil
	case '%':
		return rule, checkKeyPermissions(rule)
	case '+', '-':
		return rule, checkCommandRule(rule)
	}
	return "", errors.New("unknown rule: want ~pattern, %R~pattern, &pattern, +command, -command, +@category, " +
		"-@category, allkeys, resetkeys, allchannels, resetchannels, allcommands, nocommands or a (…) selector")
}

// checkKeyPermissions validates %R~pattern, %W~pattern and %RW~pattern.
func checkKeyPermissions(rule string) error {
	perms, pattern, ok := strings.Cut(rule[1:], "~")
	if !ok {
		return errors.New("want %R~pattern, %W~pattern or %RW~pattern")
	}
	p := strings.ToUpper(perms)
	if p != "R" && p != "W" && p != "RW" && p != "WR" {
		return fmt.Errorf("%q: key permissions are R, W or RW", perms)
	}
	if pattern == "" {
		return errors.New("empty pattern")
	}
	return nil
}

// refusedAll is why allcommands and +@all are refused.
const refusedAll = "grants every command, ACL SETUSER and CONFIG SET included, so a holder could make " +
	"users of its own that outlive its lease: grant the categories and commands the workload needs, " +
	`such as "+@read", "+@write", "-@dangerous"`

// checkCommandRule validates +name, -name, +name|sub and ±@category, and
// refuses the grant of a refused category or command.
func checkCommandRule(rule string) error {
	grant, name := rule[0] == '+', strings.ToLower(rule[1:])
	if category, ok := strings.CutPrefix(name, "@"); ok {
		switch {
		case category == "" || strings.IndexFunc(category, notNameChar) >= 0:
			return errors.New("not a category name")
		case grant && category == "all":
			return errors.New(refusedAll)
		case grant && slices.Contains(refusedCategories, category):
			return fmt.Errorf("grants every administrative command, ACL SETUSER and CONFIG SET included, so a holder "+
				"could make users of its own that outlive its lease: grant the categories and commands the workload "+
				`needs instead, and write "-@%s" after a category that holds some of them`, category)
		}
		return nil
	}
	command, sub, hasSub := strings.Cut(name, "|")
	if command == "" || strings.IndexFunc(command, notNameChar) >= 0 ||
		(hasSub && (sub == "" || strings.IndexFunc(sub, notNameChar) >= 0)) {
		return errors.New("not a command name: want +command, +command|subcommand or +@category")
	}
	if !grant {
		return nil
	}
	if refused := directGrant(name); len(refused) > 0 {
		msg := "grants " + describe(refused)
		if !hasSub && strings.Contains(refused[0], "|") {
			msg += fmt.Sprintf(": grant the subcommands the workload needs one by one (+%s|…); "+
				"these may not be granted", command)
		}
		return errors.New(msg)
	}
	return nil
}

// notNameChar reports characters that appear in no command or category name
// (module commands hold dots, as in JSON.GET).
func notNameChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == ':')
}

// checkSelector validates a "(rule rule …)" selector, whose rules are key,
// channel and command rules separated by blanks, and returns it with single
// blanks between its rules, as Redis splits it.
func checkSelector(rule string) (norm string, err error) {
	if len(rule) < 2 || !strings.HasSuffix(rule, ")") {
		return "", errors.New("a selector ends with )")
	}
	body := rule[1 : len(rule)-1]
	if strings.ContainsFunc(body, func(r rune) bool { return r != ' ' && isSpaceOrControl(r) }) {
		return "", errors.New("holds a control character: separate the selector's rules with blanks")
	}
	inner := strings.Fields(body)
	if len(inner) == 0 {
		return "", errors.New("empty selector")
	}
	var errs []error
	for _, r := range inner {
		if _, err := checkRule(r, true); err != nil {
			errs = append(errs, fmt.Errorf("in the selector, %q: %w", r, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return "(" + strings.Join(inner, " ") + ")", nil
}

var _ plugins.AdminIdentifier = (*Connection)(nil)

// AdminIdentity returns the servers the admin dials (addr, or the cluster's
// seeds) and its ACL user, "default" when username is not set.
func (c *Connection) AdminIdentity() plugins.AdminIdentity {
	var addrs []string
	for _, a := range c.seeds() {
		if host, port, err := net.SplitHostPort(a); err == nil {
			addrs = append(addrs, plugins.HostPort(host, port))
		}
	}
	return plugins.AdminIdentity{Addrs: addrs, User: cmp.Or(c.Username, "default")}
}
