package plugintest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Environment variables and defaults of the RabbitMQ service discovery.
const (
	// RabbitMQManagementURLEnv overrides where tests find the RabbitMQ
	// management HTTP API.
	RabbitMQManagementURLEnv = "CREDBROKER_TEST_RABBITMQ_MANAGEMENT_URL"
	// RabbitMQURLEnv overrides where tests find RabbitMQ's AMQP listener.
	RabbitMQURLEnv = "CREDBROKER_TEST_RABBITMQ_URL"

	// DefaultRabbitMQManagementURL is where tests look for the management API
	// when CREDBROKER_TEST_RABBITMQ_MANAGEMENT_URL is not set: a local node
	// with the management plugin enabled and its default guest user, which
	// may log in from loopback only.
	DefaultRabbitMQManagementURL = "http://guest:guest@127.0.0.1:15672"
	// DefaultRabbitMQURL is where tests look for AMQP when
	// CREDBROKER_TEST_RABBITMQ_URL is not set: the same local node.
	DefaultRabbitMQURL = "amqp://guest:guest@127.0.0.1:5672/"
)

// RabbitMQManagementURL returns the base URL of a RabbitMQ management HTTP API
// for tests, without a trailing slash and with the credentials of a user
// tagged administrator in its userinfo (http://user:password@host:port):
// $CREDBROKER_TEST_RABBITMQ_MANAGEMENT_URL, else
// [DefaultRabbitMQManagementURL]. The URL answers GET /api/whoami with those
// credentials. See [ServiceURL] for what happens when it does not; plugintest
// does not start RabbitMQ in Docker (the management API and AMQP would have
// to come from one container), so without a node the test is skipped, or
// fails with CREDBROKER_REQUIRE_SERVICES=1.
//
// Tests share the node: they work in vhosts and users of their own, with
// unique names, and delete them when they end.
func RabbitMQManagementURL(t testing.TB) string {
	t.Helper()
	u := ServiceURL(t, "rabbitmq-management", RabbitMQManagementURLEnv, DefaultRabbitMQManagementURL, pingRabbitMQManagement)
	return strings.TrimRight(u, "/")
}

// RabbitMQAMQPURL returns the AMQP URL of the same RabbitMQ node as
// [RabbitMQManagementURL], with the administrator's credentials:
// $CREDBROKER_TEST_RABBITMQ_URL, else [DefaultRabbitMQURL]. An AMQP
// connection with it opens; see [ServiceURL] for what happens when it does
// not.
func RabbitMQAMQPURL(t testing.TB) string {
	t.Helper()
	return ServiceURL(t, "rabbitmq", RabbitMQURLEnv, DefaultRabbitMQURL, pingRabbitMQ)
}

// pingRabbitMQManagement asks the management API who the URL's user is. The
// client keeps no idle connection, so it leaves no goroutine behind.
func pingRabbitMQManagement(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/whoami", nil)
	if err != nil {
		return err
	}
	// net/http sends the URL's userinfo as basic authentication and strips
	// the password from its errors.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /api/whoami: %s", res.Status)
	}
	return nil
}

// pingRabbitMQ opens and closes an AMQP connection.
func pingRabbitMQ(ctx context.Context, url string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake honours the context's deadline too; amqp091
			// clears it once the connection is open.
			deadline, ok := ctx.Deadline()
			if !ok {
				deadline = time.Now().Add(pingTimeout)
			}
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		},
	})
	if err != nil {
		return err
	}
	return conn.Close()
}
