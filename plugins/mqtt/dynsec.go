package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/credbroker/credbroker/plugins"
)

// The topics of Mosquitto's dynamic-security plugin: commands are published
// to controlTopic; the answers to every admin's commands are published, at
// QoS 0, to responseTopic, and told apart by their correlationData.
const (
	controlTopic  = "$CONTROL/dynamic-security/v1"
	responseTopic = controlTopic + "/response"
)

// Tuning of the admin connection.
const (
	dialTimeout = 5 * time.Second
	ioTimeout   = 5 * time.Second
	// commandTimeout bounds one round trip of commands, whatever the
	// caller's context allows.
	commandTimeout = 10 * time.Second
	// keepAlive is the MQTT keep-alive of the admin connection.
	keepAlive = 30 * time.Second
	// disconnectQuiesce is how long Close lets work in flight finish, in
	// milliseconds.
	disconnectQuiesce = 100
)

// command is one dynsec command. Fields a command does not use stay empty
// and are left out of the JSON.
type command struct {
	Command         string       `json:"command"`
	Username        string       `json:"username,omitempty"`
	Password        string       `json:"password,omitempty"`
	Rolename        string       `json:"rolename,omitempty"`
	Textname        string       `json:"textname,omitempty"`
	Textdescription string       `json:"textdescription,omitempty"`
	Roles           []clientRole `json:"roles,omitempty"`
	ACLs            []aclJSON    `json:"acls,omitempty"`
	ACLType         string       `json:"acltype,omitempty"` // removeRoleACL's, which the tests use
	Topic           string       `json:"topic,omitempty"`
	Verbose         *bool        `json:"verbose,omitempty"`
	Count           *int         `json:"count,omitempty"`
	CorrelationData string       `json:"correlationData"`
}

// clientRole is a role of a client, in createClient.
type clientRole struct {
	Rolename string `json:"rolename"`
	Priority int    `json:"priority"`
}

// aclJSON is an ACL as dynsec reads and reports it.
type aclJSON struct {
	ACLType  string `json:"acltype"`
	Topic    string `json:"topic"`
	Priority int    `json:"priority"`
	Allow    bool   `json:"allow"`
}

// response is dynsec's answer to one command.
type response struct {
	Command         string          `json:"command"`
	Error           string          `json:"error"`
	CorrelationData string          `json:"correlationData"`
	Data            json.RawMessage `json:"data"`
}

// err returns the response's error as a *CommandError, or nil.
func (r response) err() error {
	if r.Error == "" {
		return nil
	}
	return &CommandError{Command: r.Command, Message: r.Error}
}

// conn is one admin connection, subscribed to responseTopic. It is never
// reconnected: once lost, the plugin dials a new one.
type conn struct {
	client paho.Client

	lost     chan struct{} // closed when the connection is lost or closed
	lostOnce sync.Once

	mu      sync.Mutex
	waiting map[string]chan []response // by correlationData
}

func (c *conn) markLost() { c.lostOnce.Do(func() { close(c.lost) }) }

func (c *conn) isLost() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

// close disconnects; commands waiting on c fail.
func (c *conn) close() {
	c.markLost()
	c.client.Disconnect(disconnectQuiesce)
}

// onResponse hands a message on responseTopic to the command waiting for
// it; answers to other admins' commands are dropped.
func (c *conn) onResponse(_ paho.Client, m paho.Message) {
	var tree struct {
		Responses []response `json:"responses"`
	}
	if err := json.Unmarshal(m.Payload(), &tree); err != nil || len(tree.Responses) == 0 {
		return
	}
	id := tree.Responses[0].CorrelationData
	c.mu.Lock()
	ch := c.waiting[id]
	delete(c.waiting, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- tree.Responses // buffered: never blocks
	}
}

// await registers a waiter for the answer to the commands sent with id.
func (c *conn) await(id string) (<-chan []response, func()) {
	ch := make(chan []response, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
	}
}

// wait waits for a token, the context or the connection's end.
func (c *conn) wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-c.lost:
		return errors.New("the connection was lost")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dial makes a new admin connection and subscribes it to responseTopic.
func (p *Plugin) dial(ctx context.Context) (*conn, error) {
	c := &conn{lost: make(chan struct{}), waiting: make(map[string]chan []response)}
	opts := paho.NewClientOptions().
		AddBroker(p.endpoint.dialURL()).
		SetClientID(p.clientIDPrefix + strings.ToLower(rand.Text()[:12])).
		SetUsername(p.username).
		SetPassword(p.password.Reveal()).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(dialTimeout).
		SetWriteTimeout(ioTimeout).
		SetKeepAlive(keepAlive).
		SetPingTimeout(ioTimeout).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(paho.Client, error) { c.markLost() })
	if p.tlsConfig != nil {
		opts.SetTLSConfig(p.tlsConfig.Clone())
	}
	c.client = paho.NewClient(opts)
	t := c.client.Connect()
	select {
	case <-t.Done():
	case <-ctx.Done():
		// The attempt ends within dialTimeout; disconnect whatever it made.
		go func() {
			<-t.Done()
			c.client.Disconnect(0)
		}()
		return nil, fmt.Errorf("connect to %s: %w", p.endpoint.addr(), unavailable(ctx.Err()))
	}
	if err := t.Error(); err != nil {
		c.markLost()
		return nil, connectError(p.endpoint.addr(), p.username, err)
	}
	sub := c.client.Subscribe(responseTopic, 0, c.onResponse)
	if err := c.wait(ctx, sub); err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe to %s: %w", responseTopic, unavailable(err))
	}
	if code, ok := sub.(*paho.SubscribeToken).Result()[responseTopic]; !ok || code > 2 {
		c.close()
		return nil, fmt.Errorf("the broker refused the admin %q a subscription to %s: its role needs "+
			"subscribePattern $CONTROL/dynamic-security/# and publishClientSend $CONTROL/dynamic-security/# "+
			"(the admin `mosquitto_ctrl dynsec init` makes has them)", p.username, responseTopic)
	}
	return c, nil
}

// connectError says why the broker could not be reached or refused the
// admin. A refused login or certificate is a configuration error, not
// unavailability.
func connectError(addr, username string, err error) error {
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &certErr):
		return fmt.Errorf("connect to %s: the broker's certificate: %w (check tls.ca_file and tls.server_name)", addr, err)
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return fmt.Errorf("connect to %s: the broker refused the admin %q: %w (check username and password)", addr, username, err)
	case errors.Is(err, packets.ErrorRefusedIDRejected), errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	return fmt.Errorf("connect to %s: %w", addr, unavailable(err))
}

// unavailable marks err as [plugins.ErrUnavailable].
func unavailable(err error) error {
	if errors.Is(err, plugins.ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", plugins.ErrUnavailable, err)
}

// connection returns the admin connection, dialling a new one when there is
// none or it was lost. Dials are one at a time; callers waiting for one
// give up with their context.
func (p *Plugin) connection(ctx context.Context) (*conn, error) {
	select {
	case p.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.dialing }()
	p.mu.Lock()
	c, closed := p.conn, p.closed
	p.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if c != nil && !c.isLost() {
		return c, nil
	}
	if c != nil {
		c.close()
	}
	c, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.close()
		return nil, errClosed
	}
	p.conn = c
	return c, nil
}

// run sends cmds in one message and returns dynsec's answers, one a
// command, in order. An error means the answer did not come: the commands
// may or may not have run. An answer may itself carry an error
// ([response.err]).
func (p *Plugin) run(ctx context.Context, cmds ...command) ([]response, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	id := rand.Text()
	for i := range cmds {
		cmds[i].CorrelationData = id
	}
	payload, err := json.Marshal(struct {
		Commands []command `json:"commands"`
	}{cmds})
	if err != nil {
		return nil, err
	}
	rs, err := p.send(ctx, id, payload)
	if errors.Is(err, paho.ErrNotConnected) {
		// The connection was lost before the message left, so nothing ran:
		// once more, on a new connection.
		rs, err = p.send(ctx, id, payload)
	}
	if err != nil {
		return nil, err
	}
	if len(rs) != len(cmds) {
		return nil, fmt.Errorf("dynsec answered %d commands with %d responses", len(cmds), len(rs))
	}
	for i, r := range rs {
		if !strings.EqualFold(r.Command, cmds[i].Command) {
			return nil, fmt.Errorf("dynsec answered %s with a response to %q", cmds[i].Command, r.Command)
		}
	}
	return rs, nil
}

// send publishes payload, whose commands carry the correlationData id, and
// waits for the answer. An error matching [paho.ErrNotConnected] means the
// message was not sent.
func (p *Plugin) send(ctx context.Context, id string, payload []byte) ([]response, error) {
	c, err := p.connection(ctx)
	if err != nil {
		return nil, err
	}
	answer, done := c.await(id)
	defer done()
	if err := c.wait(ctx, c.client.Publish(controlTopic, 1, false, payload)); err != nil {
		if errors.Is(err, paho.ErrNotConnected) {
			c.markLost()
		}
		return nil, fmt.Errorf("publish to %s: %w", controlTopic, unavailable(err))
	}
	select {
	case rs := <-answer:
		return rs, nil
	case <-c.lost:
		return nil, unavailable(errors.New("the admin connection was lost before dynsec answered"))
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, unavailable(fmt.Errorf("no answer from dynsec on %s: is the dynamic-security plugin loaded, "+
				"and may the admin %q publish to %s? %w", responseTopic, p.username, controlTopic, ctx.Err()))
		}
		return nil, ctx.Err()
	}
}

// run1 runs one command and returns its answer's data, or its error.
func (p *Plugin) run1(ctx context.Context, cmd command) (json.RawMessage, error) {
	rs, err := p.run(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return rs[0].Data, rs[0].err()
}

// listed is the data of listClients and listRoles.
type listed struct {
	TotalCount int      `json:"totalCount"`
	Clients    []string `json:"clients"`
	Roles      []string `json:"roles"`
}

// roleData is the data of getRole.
type roleData struct {
	Role struct {
		Rolename string    `json:"rolename"`
		ACLs     []aclJSON `json:"acls"`
	} `json:"role"`
}

func ptr[T any](v T) *T { return &v }
