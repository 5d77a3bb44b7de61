package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"

	"github.com/credbroker/credbroker/plugins"
)

// Revoke removes the user: it deletes the user, then closes every connection
// the user still has open, on every node of the cluster. A user that does
// not exist is success, and its connections are still closed, so a retry
// after a partial failure finishes the job. A user that is not tagged
// credbroker is refused: the broker did not make it.
//
// The user is deleted before its connections are closed, not after: once it
// is gone no new connection can open, so none slips in between. (RabbitMQ
// 3.8 and later also close a deleted user's connections themselves; closing
// them here does not rely on it.)
//
// Revoke needs neither the role's spec nor a state: a lease whose role left
// the config, a lease written before contract v2 and an orphan the sweep
// found revoke alike.
func (p *Plugin) Revoke(ctx context.Context, req plugins.RevokeOf[*Role]) (plugins.RevokeResponse, error) {
	if err := p.revoke(ctx, req.Username); err != nil {
		return plugins.RevokeResponse{}, fmt.Errorf("revoke user %q: %w", req.Username, err)
	}
	return plugins.RevokeResponse{}, nil
}

func (p *Plugin) revoke(ctx context.Context, username string) error {
	if username == "" {
		return errors.New("no username given")
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c, cancelClient := p.client(ctx)
	defer cancelClient()
	u, err := c.GetUser(username)
	switch {
	case isNotFound(err):
		// Gone already; a session may still be open.
	case err != nil:
		return fmt.Errorf("look up the user: %w", classify(err))
	case !slices.Contains(u.Tags, markerTag):
		return fmt.Errorf("the user is not tagged %s: credbroker did not make it", markerTag)
	default:
		if err := gone(c.DeleteUser(username)); err != nil {
			return fmt.Errorf("delete the user: %w", err)
		}
	}
	return p.closeConnections(ctx, c, username)
}

// closeConnections closes every connection of username.
func (p *Plugin) closeConnections(ctx context.Context, c *rabbithole.Client, username string) error {
	list := func() ([]string, error) {
		names, err := p.trackedConnections(ctx, username)
		if errors.Is(err, errNoUserConnections) {
			names, err = listedConnections(c, username)
		}
		return names, err
	}
	names, err := list()
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	failed := map[string]error{}
	for _, name := range names {
		if err := gone(c.CloseConnection(name)); err != nil {
			failed[name] = err
		}
	}
	if len(failed) == 0 {
		return nil
	}
	// A connection that ends while it is being closed (deleting the user
	// closes them too) can answer 500 instead of 404: what is no longer
	// listed is closed.
	left, err := list()
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	var errs []error
	for _, name := range left {
		if err, ok := failed[name]; ok {
			errs = append(errs, fmt.Errorf("close connection %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// errNoUserConnections says the server has no GET
// /api/connections/username/{name}.
var errNoUserConnections = errors.New("no listing of connections by user")

// trackedConnections returns the names of username's connections from GET
// /api/connections/username/{name}, which rabbit-hole does not wrap. It
// reads the cluster's connection tracking, so it sees a connection as soon
// as the node has registered it, just after its handshake, and returns only
// the user's; GET /api/connections (rabbit-hole's ListConnections) returns
// every connection, and only once the statistics collector has seen it (5
// seconds by default). A server
// without the endpoint answers 404: errNoUserConnections.
func (p *Plugin) trackedConnections(ctx context.Context, username string) ([]string, error) {
	base := p.admin.Load().base
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		base.Endpoint+"/api/connections/username/"+url.PathEscape(username)+"?columns=name,user", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(base.Username, base.Password)
	res, err := (&http.Client{Transport: p.transport}).Do(req)
	if err != nil {
		return nil, classify(err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		return nil, errNoUserConnections
	case res.StatusCode == http.StatusUnauthorized:
		return nil, classify(errUnauthorized)
	case res.StatusCode != http.StatusOK:
		return nil, classify(rabbithole.ErrorResponse{StatusCode: res.StatusCode, Message: res.Status})
	}
	var conns []rabbithole.ConnectionInfo
	if err := json.NewDecoder(res.Body).Decode(&conns); err != nil {
		return nil, fmt.Errorf("decode the connections: %w", err)
	}
	return userConnectionNames(conns, username), nil
}

// listedConnections returns the names of username's connections from
// rabbit-hole's ListConnections, for servers without
// trackedConnections' endpoint.
func listedConnections(c *rabbithole.Client, username string) ([]string, error) {
	conns, err := c.ListConnections()
	if err != nil {
		return nil, classify(err)
	}
	return userConnectionNames(conns, username), nil
}

func userConnectionNames(conns []rabbithole.ConnectionInfo, username string) []string {
	var names []string
	for _, c := range conns {
		if c.User == username {
			names = append(names, c.Name)
		}
	}
	return names
}
