// Command probe is a backend program for tests: users live in its memory.
// With an argument, it first writes its environment to that file (one
// NAME=value a line), so a test can see what the broker gave it.
//
// Its connection section is {password: <secret ref>, fail_open: bool}: Open
// resolves the password reference in the program's own environment (the
// backend's env:) and fails without it. Its role section is {grant: read |
// write | down | leak}: write is a warning, down makes Create fail as
// unavailable, leak makes Create fail with an error quoting the password.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/sdk"
	"github.com/credbroker/credbroker/secret"
)

func main() {
	if len(os.Args) > 1 {
		env := strings.Join(os.Environ(), "\n") + "\n"
		if err := os.WriteFile(os.Args[1], []byte(env), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Println("probe: starting") // a line of output for the broker's log
	sdk.Serve(plugins.Typed[*connection, *role](driver{}))
}

type connection struct {
	Password secret.Ref `yaml:"password"`
	FailOpen bool       `yaml:"fail_open"`
}

type role struct {
	Grant string `yaml:"grant"`
}

type driver struct{}

func (driver) Name() string       { return "probe" }
func (driver) UsernameLimit() int { return 40 }

func (driver) Describe() plugins.Metadata {
	return plugins.Metadata{Env: []string{"PROBE_USER", "PROBE_PASSWORD"}}
}

func (driver) ParseConnection(decode plugins.Decoder) (*connection, error) {
	var c connection
	if decode == nil {
		return nil, errors.New("password: required")
	}
	if err := decode(&c); err != nil {
		return nil, err
	}
	if c.Password.IsZero() {
		return nil, errors.New("password: required")
	}
	return &c, nil
}

func (driver) ParseRole(decode plugins.Decoder) (*role, []string, error) {
	var r role
	if decode == nil {
		return nil, nil, errors.New("grant: required")
	}
	if err := decode(&r); err != nil {
		return nil, nil, err
	}
	switch r.Grant {
	case "read", "down", "leak":
		return &r, nil, nil
	case "write":
		return &r, []string{"grant: write lets a holder change everything"}, nil
	}
	return nil, nil, fmt.Errorf("grant: %q is not read, write, down or leak", r.Grant)
}

func (driver) Open(_ context.Context, c *connection) (plugins.TypedPlugin[*role], error) {
	pw, err := c.Password.Resolve()
	if err != nil {
		return nil, err
	}
	if c.FailOpen {
		return nil, fmt.Errorf("%w: fail_open is set (admin password %s)", plugins.ErrUnavailable, pw.Reveal())
	}
	return &plugin{admin: pw, users: map[string]user{}}, nil
}

type user struct {
	created time.Time
	expires time.Time
	grant   string
}

type plugin struct {
	admin secret.Value
	mu    sync.Mutex
	users map[string]user
}

func (p *plugin) Secrets() []secret.Value { return []secret.Value{p.admin} }

func (p *plugin) Warnings(context.Context) []string {
	return []string{"probe keeps its users in memory"}
}

func (p *plugin) Create(ctx context.Context, req plugins.CreateOf[*role]) (plugins.CreateResponse, error) {
	if err := ctx.Err(); err != nil {
		return plugins.CreateResponse{}, err
	}
	switch req.Spec.Grant {
	case "down":
		return plugins.CreateResponse{}, fmt.Errorf("probe: create %s: %w", req.Username, plugins.ErrUnavailable)
	case "leak":
		return plugins.CreateResponse{}, fmt.Errorf("probe: create %s with password %s and admin password %s failed", req.Username, req.Password.Reveal(), p.admin.Reveal())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.users[req.Username]; ok {
		return plugins.CreateResponse{}, fmt.Errorf("probe: user %s exists", req.Username)
	}
	p.users[req.Username] = user{created: time.Now(), expires: req.ExpiresAt, grant: req.Spec.Grant}
	return plugins.CreateResponse{
		Credential: plugins.Credential{
			Username: req.Username,
			Password: req.Password,
			URI:      secret.New("probe://" + req.Username + ":" + req.Password.Reveal() + "@probe"),
			Env:      map[string]secret.Value{"PROBE_USER": secret.New(req.Username), "PROBE_PASSWORD": req.Password},
			Fields:   map[string]string{"grant": req.Spec.Grant},
		},
		State: []byte("grant=" + req.Spec.Grant),
	}, nil
}

func (p *plugin) Renew(_ context.Context, req plugins.RenewOf[*role]) (plugins.RenewResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, ok := p.users[req.Username]
	if !ok {
		return plugins.RenewResponse{}, fmt.Errorf("probe: no user %s", req.Username)
	}
	u.expires = req.ExpiresAt
	p.users[req.Username] = u
	return plugins.RenewResponse{State: append([]byte("renewed;"), req.State...)}, nil
}

func (p *plugin) Revoke(_ context.Context, req plugins.RevokeOf[*role]) (plugins.RevokeResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.users, req.Username)
	return plugins.RevokeResponse{}, nil
}

func (p *plugin) ListManaged(context.Context) ([]plugins.ManagedUser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]plugins.ManagedUser, 0, len(p.users))
	for name, u := range p.users {
		out = append(out, plugins.ManagedUser{Username: name, CreatedAt: u.created})
	}
	return out, nil
}

func (p *plugin) CheckRole(_ context.Context, r *role) error {
	if r.Grant == "down" {
		return fmt.Errorf("probe: %w", plugins.ErrUnavailable)
	}
	return nil
}

func (p *plugin) Check(context.Context) error { return nil }
func (p *plugin) Close() error                { return nil }
