package plugintest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// container is how to run a service in Docker for tests.
type container struct {
	repository, tag string
	env             []string
	port            string                       // the service's port inside, "5432/tcp"
	url             func(hostPort string) string // the service's URL at the published port
}

func (c container) image() string { return c.repository + ":" + c.tag }

// containers are the services ServiceURL can start, by name.
var containers = map[string]container{
	"postgres": {
		repository: "postgres", tag: "15",
		env:  []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
		port: "5432/tcp",
		url: func(hp string) string {
			return "postgres://postgres@" + hp + "/postgres?sslmode=disable"
		},
	},
	"redis": {
		repository: "redis", tag: "7",
		port: "6379/tcp",
		url:  func(hp string) string { return "redis://" + hp },
	},
}

// containerStartTimeout bounds waiting for a started service to answer.
const containerStartTimeout = 2 * time.Minute

// running are the containers this test process started, by service name.
// Tests that ask for a service while it runs share it; the last one to end
// removes it.
var running = struct {
	sync.Mutex
	m map[string]*sharedContainer
}{m: make(map[string]*sharedContainer)}

type sharedContainer struct {
	url   string
	refs  int
	purge func() error
}

// startContainer starts the service name in Docker, or joins the one already
// running, and returns its URL once ping answers there. The container is
// removed when the last test using it ends. It fails when plugintest has no
// image for name or no Docker engine answers.
func startContainer(t testing.TB, name string, ping func(ctx context.Context, url string) error) (string, error) {
	t.Helper()
	spec, ok := containers[name]
	if !ok {
		return "", fmt.Errorf("plugintest knows no Docker image for %s", name)
	}
	running.Lock()
	defer running.Unlock()
	c, ok := running.m[name]
	if !ok {
		var err error
		if c, err = runContainer(spec, ping); err != nil {
			return "", err
		}
		running.m[name] = c
	}
	c.refs++
	t.Cleanup(func() {
		running.Lock()
		defer running.Unlock()
		if c.refs--; c.refs > 0 {
			return
		}
		delete(running.m, name)
		if err := c.purge(); err != nil {
			t.Errorf("remove the %s container: %v", name, err)
		}
	})
	return c.url, nil
}

func runContainer(spec container, ping func(ctx context.Context, url string) error) (*sharedContainer, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("no Docker engine: %w", err)
	}
	if err := pool.Client.Ping(); err != nil {
		return nil, fmt.Errorf("no Docker engine answers: %w", err)
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: spec.repository,
		Tag:        spec.tag,
		Env:        spec.env,
		Labels:     map[string]string{"org.credbroker.test": "true"},
	}, func(hc *docker.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = docker.NeverRestart()
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.image(), err)
	}
	purge := func() error { return pool.Purge(res) }
	u := spec.url(net.JoinHostPort(dockerHost(), res.GetPort(spec.port)))
	pool.MaxWait = containerStartTimeout
	err = pool.Retry(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		defer cancel()
		return ping(ctx, u)
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s started but does not answer: %w", spec.image(), err), purge())
	}
	return &sharedContainer{url: u, purge: purge}, nil
}

// dockerHost is the address published container ports are reached at: the
// host of DOCKER_HOST when it is a TCP address, loopback otherwise.
func dockerHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		if u, err := url.Parse(h); err == nil && u.Scheme == "tcp" && u.Hostname() != "" {
			return u.Hostname()
		}
	}
	return "127.0.0.1"
}
