package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/redis"
)

// clusterReadyTimeout bounds waiting for a started cluster to agree on its
// members.
const clusterReadyTimeout = 60 * time.Second

// cluster is a Redis Cluster a test started: its first nodes are primaries
// holding all slots, the rest replicas. Every node keeps its users in the ACL
// file acl/users.acl of its directory.
type cluster struct {
	nodes []*server
}

func startCluster(t *testing.T, primaries, replicas int) *cluster {
	t.Helper()
	cli := needBinary(t, "redis-cli")
	c := &cluster{}
	for range primaries + replicas {
		c.nodes = append(c.nodes, startServer(t, "acl/users.acl",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(freePort(t)), "--cluster-node-timeout", "2000"))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes[:primaries] {
		args = append(args, n.addr())
	}
	runCLI(t, cli, append(args, "--cluster-yes")...)
	for _, n := range c.nodes[primaries:] {
		runCLI(t, cli, "--cluster", "add-node", n.addr(), c.nodes[0].addr(), "--cluster-slave")
	}
	c.waitReady(t)
	return c
}

func runCLI(t *testing.T, cli string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), clusterReadyTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitReady polls until every node lists every other as a connected member
// and the cluster state is ok.
func (c *cluster) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	var last string
	for {
		if last = c.notReady(t); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster is not ready after %v: %s", clusterReadyTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notReady says why the cluster is not ready yet, or "".
func (c *cluster) notReady(t *testing.T) string {
	for _, n := range c.nodes {
		admin := n.admin()
		info, err := admin.ClusterInfo(t.Context()).Result()
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER INFO: %v", n.addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return n.addr() + ": cluster_state is not ok"
		}
		nodes, err := admin.ClusterNodes(t.Context()).Result()
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER NODES: %v", n.addr(), err)
		}
		lines := strings.Split(strings.TrimSpace(nodes), "\n")
		if len(lines) != len(c.nodes) {
			return fmt.Sprintf("%s lists %d nodes, want %d", n.addr(), len(lines), len(c.nodes))
		}
		for _, l := range lines {
			if strings.Contains(l, "handshake") || strings.Contains(l, "fail") || strings.Contains(l, "noaddr") ||
				!strings.Contains(l, "connected") {
				return n.addr() + " lists a node not ready: " + l
			}
		}
	}
	return ""
}

// connection returns a connection section with the seeds in the order of
// the nodes given, or of all nodes.
func (c *cluster) connection(t *testing.T, order ...*server) *redis.Connection {
	t.Helper()
	if len(order) == 0 {
		order = c.nodes
	}
	var addrs []string
	for _, n := range order {
		addrs = append(addrs, n.addr())
	}
	return connection(t, "addrs: ["+strings.Join(addrs, ", ")+"]")
}

func (c *cluster) addrs() []string {
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.addr())
	}
	return addrs
}

// clusterOrdersRole is ordersRole plus what a go-redis cluster client reads:
// the topology, and the commands' key positions.
const clusterOrdersRole = `rules: ["~orders:*", "+@read", "+@write", "-@dangerous", "+ping", "+cluster|slots", "+command"]`

// clusterSession is a login as an issued credential on a cluster: one held
// connection to every node, and a cluster client for commands on keys.
type clusterSession struct {
	nodes   []*session
	cluster *goredis.ClusterClient
}

func clusterLogin(addrs []string) func(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
	return func(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
		s := &clusterSession{}
		for _, a := range addrs {
			opt, err := userOptions(c)
			if err != nil {
				return nil, err
			}
			opt.Addr = a
			n, err := loginWith(ctx, opt, c.Password)
			if err != nil {
				_ = s.Close()
				return nil, fmt.Errorf("node %s: %w", a, err)
			}
			s.nodes = append(s.nodes, n)
		}
		s.cluster = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs: addrs, Username: c.Username, Password: c.Password.Reveal(), DisableIdentity: true,
		})
		return s, nil
	}
}

// Ping fails once no node's connection answers.
func (s *clusterSession) Ping(ctx context.Context) error {
	var errs []error
	for _, n := range s.nodes {
		err := n.Ping(ctx)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CheckGrants proves the orders role through the cluster client, and the
// denials on every node.
func (s *clusterSession) CheckGrants(ctx context.Context) error {
	if err := checkOrdersGrants(ctx, s.cluster); err != nil {
		return err
	}
	for i, n := range s.nodes {
		if err := checkDenied(ctx, n.conn); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
	}
	return nil
}

func (s *clusterSession) Close() error {
	var errs []error
	for _, n := range s.nodes {
		errs = append(errs, n.Close())
	}
	if s.cluster != nil {
		errs = append(errs, s.cluster.Close())
	}
	return errors.Join(errs...)
}

func TestClusterConformance(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 0)
	plugintest.Run(t, plugintest.Harness{
		Driver:     redis.New(),
		Connection: c.connection(t),
		Role:       parseRole(t, clusterOrdersRole),
		Login:      clusterLogin(c.addrs()),
	})
}

// TestClusterEveryNode: with a replica, the user is made on all four nodes,
// saved in each node's ACL file, logs in on each, and is removed from all.
func TestClusterEveryNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 1)
	// One seed is enough to find every node, the replica included.
	p := open(t, connection(t, "addrs: ["+c.nodes[1].addr()+"]"))
	if err := p.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	cred := create(t, p, "everynode", parseRole(t, clusterOrdersRole))
	if got := cred.Fields["addrs"]; got != c.nodes[1].addr() {
		t.Errorf(`Fields["addrs"] = %q, want the seeds`, got)
	}
	for i, n := range c.nodes {
		if !hasUser(t, n.admin(), cred.Username) {
			t.Errorf("node %d (%s) does not have the user", i, n.addr())
		}
		if !fileHasUser(t, n.acl, cred.Username) {
			t.Errorf("node %d's ACL file does not hold the user", i)
		}
		opt, err := userOptions(cred)
		if err != nil {
			t.Fatal(err)
		}
		opt.Addr = n.addr()
		s, err := loginWith(t.Context(), opt, cred.Password)
		if err != nil {
			t.Errorf("login on node %d: %v", i, err)
			continue
		}
		_ = s.Close()
	}
	if err := renew(t.Context(), p, cred.Username); err != nil {
		t.Errorf("Renew: %v", err)
	}
	users, err := p.ListManaged(t.Context())
	if err != nil || len(users) != 1 || users[0].Username != cred.Username {
		t.Errorf("ListManaged = %v, %v; want just %s", users, err, cred.Username)
	}

	// A user left on one node only (say, by a failed undo) is still listed.
	stray := plugins.NewUsername("stray", redis.Driver{}.UsernameLimit())
	if err := c.nodes[3].admin().ACLSetUser(t.Context(), stray, "reset").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = revoke(context.Background(), p, stray) })
	users, err = p.ListManaged(t.Context())
	if err != nil || len(users) != 2 || users[1].Username != stray {
		t.Errorf("ListManaged = %v, %v; want %s and the stray user on the replica %s", users, err, cred.Username, stray)
	}

	if err := revoke(t.Context(), p, cred.Username); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	for i, n := range c.nodes {
		if hasUser(t, n.admin(), cred.Username) {
			t.Errorf("node %d still has the user after Revoke", i)
		}
		if fileHasUser(t, n.acl, cred.Username) {
			t.Errorf("node %d's ACL file still holds the user after Revoke", i)
		}
	}
}

// TestClusterNodeDown stops a node (the first seed): Create fails and makes
// nothing; Revoke deletes the user where it can and fails until the node is
// back, with the user it saved, then succeeds.
func TestClusterNodeDown(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 0)
	down, up := c.nodes[2], c.nodes[:2]
	p := open(t, c.connection(t, down, c.nodes[0], c.nodes[1]))
	role := parseRole(t, clusterOrdersRole)
	live := create(t, p, "nodedown", role)

	down.stop()
	username := plugins.NewUsername("nodedown", redis.Driver{}.UsernameLimit())
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Spec: role,
	})
	if !errors.Is(err, plugins.ErrUnavailable) || !strings.Contains(err.Error(), down.addr()) {
		t.Errorf("Create with a node down = %v, want ErrUnavailable naming %s", err, down.addr())
	}
	for i, n := range up {
		if hasUser(t, n.admin(), username) {
			t.Errorf("the failed Create left the user on node %d", i)
		}
	}
	if err := renew(t.Context(), p, live.Username); err == nil {
		t.Error("Renew with a node down succeeded")
	}
	if _, err := p.ListManaged(t.Context()); err == nil {
		t.Error("ListManaged with a node down succeeded: its list would miss that node's users")
	}

	err = revoke(t.Context(), p, live.Username)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Revoke with a node down = %v, want ErrUnavailable", err)
	}
	for i, n := range up {
		if hasUser(t, n.admin(), live.Username) {
			t.Errorf("Revoke left the user on node %d, which answers", i)
		}
	}

	down.restart()
	c.waitReady(t)
	if !hasUser(t, down.admin(), live.Username) {
		t.Fatal("the restarted node lost the user it saved: this test proves nothing")
	}
	if err := revoke(t.Context(), p, live.Username); err != nil {
		t.Fatalf("Revoke with every node up again: %v", err)
	}
	for i, n := range c.nodes {
		if hasUser(t, n.admin(), live.Username) || fileHasUser(t, n.acl, live.Username) {
			t.Errorf("node %d still has the user after the retried Revoke", i)
		}
	}
	create(t, p, "nodedown", role) // and the cluster issues again
}

// TestClusterUndo makes one node fail after the user was made everywhere
// (its ACL file cannot be written): Create removes the user from every node
// and fails.
func TestClusterUndo(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, 0)
	p := open(t, c.connection(t))
	role := parseRole(t, clusterOrdersRole)
	live := create(t, p, "undo", role)

	broken := c.nodes[1]
	aclDir := filepath.Dir(broken.acl)
	if err := os.RemoveAll(aclDir); err != nil {
		t.Fatal(err)
	}
	username := plugins.NewUsername("undo", redis.Driver{}.UsernameLimit())
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Spec: role,
	})
	if err == nil || !strings.Contains(err.Error(), "node "+broken.addr()) || !strings.Contains(err.Error(), "ACL SAVE") {
		t.Fatalf("Create with one node unable to save = %v, want an error naming the node and ACL SAVE", err)
	}
	for i, n := range c.nodes {
		if hasUser(t, n.admin(), username) {
			t.Errorf("the failed Create left the user on node %d", i)
		}
	}

	if err := revoke(t.Context(), p, live.Username); err == nil {
		t.Error("Revoke succeeded though one node cannot save the deletion")
	}
	if err := os.MkdirAll(aclDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := revoke(t.Context(), p, live.Username); err != nil {
		t.Fatalf("Revoke once every node can save: %v", err)
	}
	for i, n := range c.nodes {
		if hasUser(t, n.admin(), live.Username) || fileHasUser(t, n.acl, live.Username) {
			t.Errorf("node %d still has the revoked user", i)
		}
	}
}
