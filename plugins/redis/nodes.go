package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// node is one Redis server the plugin keeps users on.
type node struct {
	addr   string
	client *goredis.Client
}

// client returns the admin client of the server at addr, made on first use.
func (p *Plugin) client(addr string) (*goredis.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if c, ok := p.clients[addr]; ok {
		return c, nil
	}
	c := goredis.NewClient(p.options(addr))
	p.clients[addr] = c
	return c, nil
}

// nodes returns every server a user must be made on: the one server of a
// standalone backend; every node a cluster lists, primaries and replicas,
// including those it marks as failing, since they come back with the users
// they had.
func (p *Plugin) nodes(ctx context.Context) ([]node, error) {
	if !p.cluster {
		c, err := p.client(p.seeds[0])
		if err != nil {
			return nil, err
		}
		return []node{{addr: p.seeds[0], client: c}}, nil
	}
	addrs, err := p.clusterAddrs(ctx)
	if err != nil {
		return nil, fmt.Errorf("find the cluster's nodes: %w", classify(err))
	}
	nodes := make([]node, len(addrs))
	for i, a := range addrs {
		c, err := p.client(a)
		if err != nil {
			return nil, err
		}
		nodes[i] = node{addr: a, client: c}
	}
	return nodes, nil
}

// clusterAddrs asks the seeds, in order, for CLUSTER NODES and returns the
// addresses the first one that answers lists.
func (p *Plugin) clusterAddrs(ctx context.Context) ([]string, error) {
	var errs []error
	for _, seed := range p.seeds {
		c, err := p.client(seed)
		if err != nil {
			return nil, err
		}
		out, err := c.ClusterNodes(ctx).Result()
		if err == nil {
			return parseClusterNodes(out, seed)
		}
		errs = append(errs, fmt.Errorf("%s: %w", seed, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// parseClusterNodes reads the addresses of the nodes in a CLUSTER NODES
// reply that seed gave. A node still in the handshake is not yet part of the
// cluster and is left out; a node without an address is an error, since no
// user can be made on it.
func parseClusterNodes(out, seed string) ([]string, error) {
	var addrs []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		id, endpoint, flags := f[0], f[1], strings.Split(f[2], ",")
		if slices.Contains(flags, "handshake") {
			continue
		}
		hostPort, _, _ := strings.Cut(endpoint, "@")
		host, port, err := net.SplitHostPort(hostPort)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES lists node %s at %q: not host:port", id, endpoint)
		}
		if host == "" && slices.Contains(flags, "myself") {
			// A node that has not learned its own address yet: the seed is it.
			seedHost, _, _ := net.SplitHostPort(seed)
			host = seedHost
		}
		if host == "" || port == "0" || slices.Contains(flags, "noaddr") {
			return nil, fmt.Errorf("cluster node %s has no known address, so no user can be made on it", id)
		}
		if addr := net.JoinHostPort(host, port); !slices.Contains(addrs, addr) {
			addrs = append(addrs, addr)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("CLUSTER NODES lists no node")
	}
	return addrs, nil
}

// each runs f on every node at once and joins the errors, each naming its
// node when the backend is a cluster.
func (p *Plugin) each(ctx context.Context, nodes []node, f func(ctx context.Context, i int, n node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			if err := f(ctx, i, n); err != nil {
				if p.cluster {
					err = fmt.Errorf("node %s: %w", n.addr, err)
				}
				errs[i] = classify(err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
