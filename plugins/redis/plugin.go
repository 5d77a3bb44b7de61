package redis

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Plugin issues and removes the ACL users of one Redis server or Redis
// Cluster. It is safe for concurrent use; make one with [Driver.Open].
type Plugin struct {
	cluster   bool
	seeds     []string // Connection.Addr, or Connection.Addrs
	username  string   // the admin's
	password  secret.Value
	tlsConfig *tls.Config
	scheme    string                 // of issued URIs: redis or rediss
	secrets   []secret.Value         // the admin password, for Secrets
	configure func(*goredis.Options) // edits every client's options (tests)

	mu      sync.Mutex
	clients map[string]*goredis.Client // admin clients by node address
	closed  bool
}

var (
	_ plugins.TypedPlugin[*Role] = (*Plugin)(nil)
	_ plugins.Warner             = (*Plugin)(nil)
	_ plugins.SecretHolder       = (*Plugin)(nil)
)

// Tuning of the admin connections.
const (
	dialTimeout = 5 * time.Second
	ioTimeout   = 5 * time.Second
	// poolSize is the most admin connections to one node.
	poolSize = 8
	// undoTimeout bounds removing what a failed Create made, which runs
	// even when the Create's context is done.
	undoTimeout = 30 * time.Second
)

// open connects with c. configure, when not nil, edits the options of every
// admin client before it is made (tests record the wire with it).
func open(ctx context.Context, c *Connection, configure func(*goredis.Options)) (*Plugin, error) {
	p := &Plugin{
		cluster:   c.cluster(),
		seeds:     slices.Clone(c.seeds()),
		username:  c.Username,
		scheme:    "redis",
		configure: configure,
		clients:   make(map[string]*goredis.Client),
	}
	if !c.adminPassword.IsZero() {
		p.password = c.adminPassword
		p.secrets = append(p.secrets, c.adminPassword)
	} else if !c.Password.IsZero() {
		pw, err := c.Password.Resolve()
		if err != nil {
			return nil, fmt.Errorf("open: password: %w", err)
		}
		p.password = pw
		p.secrets = append(p.secrets, pw)
	}
	if c.TLS.Enabled {
		cfg, err := tlsConfig(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("open: tls: %w", err)
		}
		p.tlsConfig, p.scheme = cfg, "rediss"
	}
	if err := p.setup(ctx); err != nil {
		_ = p.Close()
		// The one error the decorator of plugins.Open cannot redact the
		// admin password from: there is no plugin to ask for it yet.
		return nil, plugins.Sanitize(fmt.Errorf("open: %w", err), p.secrets...)
	}
	return p, nil
}

func tlsConfig(t TLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile == "" {
		return cfg, nil
	}
	pool, err := plugins.CAPool(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// options returns the admin client options for the node at addr.
func (p *Plugin) options(addr string) *goredis.Options {
	o := &goredis.Options{
		Addr:                  addr,
		Username:              p.username,
		Password:              p.password.Reveal(),
		TLSConfig:             p.tlsConfig,
		DialTimeout:           dialTimeout,
		ReadTimeout:           ioTimeout,
		WriteTimeout:          ioTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            2,
		DialerRetries:         2,
		PoolSize:              poolSize,
		// Redis 7 has no maintenance notifications; do not ask on every dial.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if p.configure != nil {
		p.configure(o)
	}
	return o
}

// setup proves the backend is what the configuration says: a standalone
// server answers and is not a cluster node (users made on one node of a
// cluster would be missing on the others); a cluster lists its nodes.
func (p *Plugin) setup(ctx context.Context) error {
	if p.cluster {
		_, err := p.nodes(ctx)
		return err
	}
	c, err := p.client(p.seeds[0])
	if err != nil {
		return err
	}
	var ping *goredis.StatusCmd
	var cfg *goredis.MapStringStringCmd
	if err := pipelined(ctx, c, func(pipe goredis.Pipeliner) {
		ping = pipe.Ping(ctx)
		cfg = pipe.ConfigGet(ctx, "cluster-enabled")
	}); err != nil {
		return classify(err)
	}
	if err := ping.Err(); err != nil {
		return fmt.Errorf("PING: %w", classify(err))
	}
	if err := cfg.Err(); err != nil {
		return fmt.Errorf("CONFIG GET cluster-enabled: %w", classify(err))
	}
	if cfg.Val()["cluster-enabled"] == "yes" {
		return fmt.Errorf("addr: %s is a Redis Cluster node: list the cluster's nodes under addrs instead, "+
			"so users are made on every node", p.seeds[0])
	}
	return nil
}

// Secrets returns the admin password, which the decorator of [plugins.Open]
// redacts from every error and warning.
func (p *Plugin) Secrets() []secret.Value { return p.secrets }

// passwordHash is the ACL rule that gives a user the password pw: "#" and
// the SHA-256 of pw in hex, which is what Redis stores, so the plaintext
// never reaches the server.
func passwordHash(pw secret.Value) string {
	sum := sha256.Sum256([]byte(pw.Reveal()))
	return "#" + hex.EncodeToString(sum[:])
}

// Create makes the user on every node with ACL SETUSER <name> reset on
// #<sha256 of the password> resetkeys resetchannels -@all <role rules…>, and
// saves the ACL file of every node that has one. It first checks on every
// node that the user does not exist, and fails with [ErrUserExists] if one
// has it, so it does not take over a user it did not make (the check and
// ACL SETUSER are two commands, but usernames hold 50 random bits, so no
// other Create races it). If any node fails after that, it deletes the user
// from every node it can before returning the error. req.Spec is checked
// again (a Role can be built by hand); req.ExpiresAt is unused: Redis users
// do not expire. The State is nil: Revoke needs nothing but the username,
// and asks each node whether it keeps an ACL file when it runs.
func (p *Plugin) Create(ctx context.Context, req plugins.CreateOf[*Role]) (plugins.CreateResponse, error) {
	if err := p.create(ctx, req); err != nil {
		return plugins.CreateResponse{}, fmt.Errorf("create user %q: %w", req.Username, err)
	}
	return plugins.CreateResponse{Credential: p.credential(req.Username, req.Password)}, nil
}

func (p *Plugin) create(ctx context.Context, req plugins.CreateOf[*Role]) error {
	rules, err := rulesOf(req.Spec)
	if err != nil {
		return err
	}
	if err := checkUsername(req.Username); err != nil {
		return err
	}
	if req.Password.IsZero() {
		return errors.New("no password given")
	}
	nodes, err := p.nodes(ctx)
	if err != nil {
		return err
	}

	// Nothing is made until every node answers and none has the user.
	aclFile := make([]bool, len(nodes))
	err = p.each(ctx, nodes, func(ctx context.Context, i int, n node) error {
		exists, file, err := inspect(ctx, n.client, req.Username)
		if err == nil && exists {
			err = ErrUserExists
		}
		aclFile[i] = file
		return err
	})
	if err != nil {
		return err
	}

	setUser := append([]string{"reset", "on", passwordHash(req.Password), "resetkeys", "resetchannels", "-@all"}, rules...)
	err = p.each(ctx, nodes, func(ctx context.Context, i int, n node) error {
		if err := n.client.ACLSetUser(ctx, req.Username, setUser...).Err(); err != nil {
			return fmt.Errorf("ACL SETUSER: %w", err)
		}
		if aclFile[i] {
			return saveACL(ctx, n.client)
		}
		return nil
	})
	if err != nil {
		undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		if undoErr := p.each(undoCtx, nodes, func(ctx context.Context, _ int, n node) error {
			return remove(ctx, n.client, req.Username)
		}); undoErr != nil {
			return errors.Join(err, fmt.Errorf("and removing the user again failed, Revoke will retry: %w", undoErr))
		}
		return err
	}
	return nil
}

// inspect reports whether the node has the user and whether it keeps its
// users in an ACL file, in one round trip.
func inspect(ctx context.Context, c *goredis.Client, username string) (exists, aclFile bool, err error) {
	var get *goredis.Cmd
	var cfg *goredis.MapStringStringCmd
	if err := pipelined(ctx, c, func(pipe goredis.Pipeliner) {
		get = pipe.Do(ctx, "acl", "getuser", username)
		cfg = pipe.ConfigGet(ctx, "aclfile")
	}); err != nil {
		return false, false, err
	}
	switch err := get.Err(); {
	case errors.Is(err, goredis.Nil):
	case err != nil:
		return false, false, fmt.Errorf("ACL GETUSER: %w", err)
	default:
		exists = true
	}
	if err := cfg.Err(); err != nil {
		return false, false, fmt.Errorf("CONFIG GET aclfile: %w", err)
	}
	return exists, cfg.Val()["aclfile"] != "", nil
}

// remove deletes the user from the node, which also closes its connections,
// and saves the node's ACL file if it has one, whether or not the user was
// there: a Revoke retried after a failed save must still save.
func remove(ctx context.Context, c *goredis.Client, username string) error {
	var del *goredis.IntCmd
	var cfg *goredis.MapStringStringCmd
	if err := pipelined(ctx, c, func(pipe goredis.Pipeliner) {
		del = pipe.ACLDelUser(ctx, username)
		cfg = pipe.ConfigGet(ctx, "aclfile")
	}); err != nil {
		return err
	}
	if err := del.Err(); err != nil {
		return fmt.Errorf("ACL DELUSER: %w", err)
	}
	if err := cfg.Err(); err != nil {
		return fmt.Errorf("CONFIG GET aclfile: %w", err)
	}
	if cfg.Val()["aclfile"] != "" {
		return saveACL(ctx, c)
	}
	return nil
}

// pipelined sends the commands queue adds in one round trip. Each command
// holds its own reply or error; the error returned is one that stopped the
// whole pipeline, such as a connection that could not be made or whose login
// failed, which go-redis sets on no command.
func pipelined(ctx context.Context, c *goredis.Client, queue func(goredis.Pipeliner)) error {
	pipe := c.Pipeline()
	queue(pipe)
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, cmd := range cmds {
		if cmd.Err() != nil {
			return nil // the commands carry the errors
		}
	}
	return err
}

func saveACL(ctx context.Context, c *goredis.Client) error {
	if err := c.Do(ctx, "acl", "save").Err(); err != nil {
		return fmt.Errorf("ACL SAVE: %w", err)
	}
	return nil
}

// checkUsername accepts the names [plugins.NewUsername] makes: the managed
// prefix, then letters, digits, '_', '-' and '.', at most usernameLimit
// bytes.
func checkUsername(name string) error {
	if err := checkManaged(name); err != nil {
		return err
	}
	if len(name) > usernameLimit {
		return fmt.Errorf("the username is %d bytes: credbroker makes Redis users of at most %d", len(name), usernameLimit)
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
	}); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return fmt.Errorf("the username holds %q: use letters, digits, '_', '-' and '.'", r)
	}
	return nil
}

// checkManaged refuses names credbroker did not make.
func checkManaged(name string) error {
	if !strings.HasPrefix(name, plugins.ManagedPrefix) {
		return ErrNotManaged
	}
	return nil
}

// credential is what a workload needs to log in as username.
func (p *Plugin) credential(username string, password secret.Value) plugins.Credential {
	addr := p.seeds[0]
	host, port, _ := net.SplitHostPort(addr) // validated by Connection.validate
	u := url.URL{Scheme: p.scheme, User: url.UserPassword(username, password.Reveal()), Host: addr}
	uri := secret.New(u.String())
	cred := plugins.Credential{
		Username: username,
		Password: password,
		URI:      uri,
		Env: map[string]secret.Value{
			"REDISCLI_AUTH":  password,
			"REDIS_URL":      uri,
			"REDIS_HOST":     secret.New(host),
			"REDIS_PORT":     secret.New(port),
			"REDIS_USERNAME": secret.New(username),
		},
		Fields: map[string]string{
			"host":     host,
			"port":     port,
			"username": username,
		},
	}
	if p.cluster {
		cred.Fields["addrs"] = strings.Join(p.seeds, ",")
	}
	return cred
}

// Renew checks that the user still exists on every node; it moves nothing,
// because Redis users have no expiry: the reaper alone removes them. A user
// missing on a node is an error matching [ErrNoUser]. The state is kept.
func (p *Plugin) Renew(ctx context.Context, req plugins.RenewOf[*Role]) (plugins.RenewResponse, error) {
	if err := p.renew(ctx, req.Username); err != nil {
		return plugins.RenewResponse{}, fmt.Errorf("renew user %q: %w", req.Username, err)
	}
	return plugins.RenewResponse{}, nil
}

func (p *Plugin) renew(ctx context.Context, username string) error {
	if err := checkManaged(username); err != nil {
		return err
	}
	nodes, err := p.nodes(ctx)
	if err != nil {
		return err
	}
	return p.each(ctx, nodes, func(ctx context.Context, _ int, n node) error {
		err := n.client.Do(ctx, "acl", "getuser", username).Err()
		if errors.Is(err, goredis.Nil) {
			return ErrNoUser
		}
		if err != nil {
			return fmt.Errorf("ACL GETUSER: %w", err)
		}
		return nil
	})
}

// Revoke deletes the user from every node with ACL DELUSER, which closes
// the user's connections, and saves the ACL file of every node that has one.
// A user that does not exist is success. If any node cannot be reached or
// fails, Revoke returns an error, having deleted the user wherever it could,
// so the reaper retries until every node is done. A username without the
// managed prefix is refused with [ErrNotManaged]. Revoke needs neither the
// role's spec nor a state: a lease whose role left the config, a lease
// written before contract v2 and an orphan the sweep found revoke alike.
func (p *Plugin) Revoke(ctx context.Context, req plugins.RevokeOf[*Role]) (plugins.RevokeResponse, error) {
	if err := p.revoke(ctx, req.Username); err != nil {
		return plugins.RevokeResponse{}, fmt.Errorf("revoke user %q: %w", req.Username, err)
	}
	return plugins.RevokeResponse{}, nil
}

func (p *Plugin) revoke(ctx context.Context, username string) error {
	if err := checkManaged(username); err != nil {
		return err
	}
	nodes, err := p.nodes(ctx)
	if err != nil {
		return err
	}
	return p.each(ctx, nodes, func(ctx context.Context, _ int, n node) error {
		return remove(ctx, n.client, username)
	})
}

// ListManaged returns the users whose names start with
// [plugins.ManagedPrefix] on any node, sorted. Redis does not record when a
// user was made, so CreatedAt is zero. A node that does not answer is an
// error: a partial list would hide users.
func (p *Plugin) ListManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	users, err := p.listManaged(ctx)
	if err != nil {
		return nil, fmt.Errorf("list managed users: %w", err)
	}
	return users, nil
}

func (p *Plugin) listManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	nodes, err := p.nodes(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var names []string
	err = p.each(ctx, nodes, func(ctx context.Context, _ int, n node) error {
		all, err := n.client.ACLUsers(ctx).Result()
		if err != nil {
			return fmt.Errorf("ACL USERS: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, u := range all {
			if strings.HasPrefix(u, plugins.ManagedPrefix) {
				names = append(names, u)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	names = slices.Compact(names)
	users := make([]plugins.ManagedUser, len(names))
	for i, n := range names {
		users[i] = plugins.ManagedUser{Username: n}
	}
	return users, nil
}

// Check reports whether every node answers PING and ACL WHOAMI, lets the
// admin run ACL USERS and CONFIG GET aclfile, and (by ACL DRYRUN) would let
// it run ACL GETUSER, SETUSER and DELUSER, ACL SAVE where the node has an
// ACL file, and CLUSTER NODES in a cluster.
func (p *Plugin) Check(ctx context.Context) error {
	if err := p.check(ctx); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	return nil
}

func (p *Plugin) check(ctx context.Context) error {
	nodes, err := p.nodes(ctx)
	if err != nil {
		return err
	}
	return p.each(ctx, nodes, func(ctx context.Context, _ int, n node) error {
		type step struct {
			what string
			cmd  goredis.Cmder
		}
		var steps []step
		if err := pipelined(ctx, n.client, func(pipe goredis.Pipeliner) {
			steps = []step{
				{"PING", pipe.Ping(ctx)},
				{"ACL WHOAMI", pipe.ACLWhoAmI(ctx)},
				{"ACL USERS", pipe.ACLUsers(ctx)},
				{"CONFIG GET aclfile", pipe.ConfigGet(ctx, "aclfile")},
			}
		}); err != nil {
			return err
		}
		for _, s := range steps {
			if err := s.cmd.Err(); err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
		}
		admin := steps[1].cmd.(*goredis.StringCmd).Val()
		needed := [][]any{{"acl", "getuser", "cb_check"}, {"acl", "setuser", "cb_check"}, {"acl", "deluser", "cb_check"}}
		if steps[3].cmd.(*goredis.MapStringStringCmd).Val()["aclfile"] != "" {
			needed = append(needed, []any{"acl", "save"})
		}
		if p.cluster {
			needed = append(needed, []any{"cluster", "nodes"})
		}
		for _, cmd := range needed {
			verdict, err := n.client.ACLDryRun(ctx, admin, cmd...).Result()
			if err != nil {
				return fmt.Errorf("ACL DRYRUN: %w", err)
			}
			if verdict != "OK" {
				return fmt.Errorf("the admin user %q may not run %s %s: %s", admin,
					strings.ToUpper(cmd[0].(string)), strings.ToUpper(cmd[1].(string)), verdict)
			}
		}
		return nil
	})
}

// CheckRole proves the server accepts the role's rules (so a misspelt
// command or category is found at start) and that they grant none of the
// refused commands on this server, whose categories may hold more than Redis
// 7.0's: it makes a user with them that is switched off and has no
// password, on one node, asks ACL DRYRUN whether that user may run each
// refused command (on a server without ACL DRYRUN, it plays the rules over
// what ACL CAT lists), and deletes the user at once. Should the broker stop
// in between, the user is a managed one that the reaper's sweep removes.
func (p *Plugin) CheckRole(ctx context.Context, role *Role) error {
	if err := p.checkRole(ctx, role); err != nil {
		return fmt.Errorf("check role: %w", err)
	}
	return nil
}

func (p *Plugin) checkRole(ctx context.Context, role *Role) error {
	rules, err := rulesOf(role)
	if err != nil {
		return err
	}
	nodes, err := p.nodes(ctx)
	if err != nil {
		return err
	}
	probe := plugins.NewUsername("rolecheck", usernameLimit)
	setUser := append([]string{"reset", "off", "resetkeys", "resetchannels", "-@all"}, rules...)
	var errs []error
	for _, n := range nodes {
		err := n.client.ACLSetUser(ctx, probe, setUser...).Err()
		var checkErr error
		if err == nil {
			checkErr = liveGrants(ctx, n.client, probe, rules)
		}
		undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		delErr := n.client.ACLDelUser(undoCtx, probe).Err()
		cancel()
		switch {
		case err == nil && checkErr != nil:
			if delErr != nil {
				checkErr = errors.Join(checkErr, fmt.Errorf("delete the probe user %s: %w", probe, classify(delErr)))
			}
			return checkErr
		case err == nil && delErr != nil:
			return fmt.Errorf("delete the probe user %s: %w", probe, classify(delErr))
		case err == nil:
			return nil
		case !connectionFailure(err):
			return fmt.Errorf("the server refuses the rules: %w", err)
		}
		if p.cluster {
			err = fmt.Errorf("node %s: %w", n.addr, err)
		}
		errs = append(errs, err) // unreachable: try the next node
	}
	return classify(errors.Join(errs...))
}

// Warnings reports an admin connection in plain text (tls.enabled unset) to
// a server off loopback: the admin's password and every ACL SETUSER it sends
// cross the network readable. In a cluster it names every such node that
// CLUSTER NODES lists, or the seeds when none answers.
func (p *Plugin) Warnings(ctx context.Context) []string {
	if p.tlsConfig != nil {
		return nil
	}
	addrs := p.seeds
	if p.cluster {
		if nodes, err := p.nodes(ctx); err == nil {
			addrs = nil
			for _, n := range nodes {
				addrs = append(addrs, n.addr)
			}
		}
	}
	var remote []string
	for _, a := range addrs {
		if host, _, err := net.SplitHostPort(a); err == nil && !plugins.IsLoopback(host) && !slices.Contains(remote, a) {
			remote = append(remote, a)
		}
	}
	if len(remote) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("the admin connection to %s is plain text off loopback: the admin's password and "+
		"every user it creates cross the network readable; set tls.enabled: true (the server needs tls-port)",
		strings.Join(remote, ", "))}
}

// Close releases the admin connections. Calls after the first do nothing.
func (p *Plugin) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, c := range p.clients {
		errs = append(errs, c.Close())
	}
	p.clients = nil
	return errors.Join(errs...)
}
