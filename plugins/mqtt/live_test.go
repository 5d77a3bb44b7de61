package mqtt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mqtt"
)

// TestRevokeDisconnectsSubscriber: a client subscribed when Revoke runs is
// disconnected by the broker, and its credential no longer logs in.
func TestRevokeDisconnectsSubscriber(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	base := "cbtest/" + unique()
	cred, st := create(t, p, parseRole(t, topicRole(base)))

	sub, err := login(t.Context(), cred)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer sub.Disconnect(0)
	if err := sub.mustSubscribe(t.Context(), base+"/#"); err != nil {
		t.Fatal(err)
	}
	// The subscription works: the subscriber receives what it publishes.
	if err := sub.publish(t.Context(), base+"/a", "before"); err != nil {
		t.Fatal(err)
	}
	if err := sub.until(t.Context(), base+"/a", "before", nil); err != nil {
		t.Fatal(err)
	}

	if _, err := p.Revoke(t.Context(), plugins.RevokeOf[*mqtt.Role]{Username: cred.Username, Role: "test", State: st}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	select {
	case <-sub.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber is still connected 10 s after Revoke")
	}
	if c, err := login(t.Context(), cred); err == nil {
		c.Disconnect(0)
		t.Error("the revoked credential still logs in")
	}
	for _, kind := range []string{"Client", "Role"} {
		if ok, err := p.DynsecExists(t.Context(), kind, cred.Username); err != nil || ok {
			t.Errorf("after Revoke, the %s %s exists = %v, %v; want false, nil", kind, cred.Username, ok, err)
		}
	}
}

// controlCommand is what a holder would publish to make a client of its
// own.
func controlCommand(username string) string {
	b, _ := json.Marshal(map[string]any{"commands": []map[string]any{{
		"command": "createClient", "username": username, "password": "takeover-" + unique(),
		"roles": []map[string]any{{"rolename": "admin"}},
	}}})
	return string(b)
}

// checkNoControl proves c can neither administer dynsec nor read its
// answers: subscribing to $CONTROL topics is refused; a createClient it
// publishes makes nothing; and, subscribed to base/# and #, it receives
// none of the answers to the admin's commands.
func checkNoControl(t *testing.T, p *mqtt.Plugin, c *client, base string) {
	t.Helper()
	ctx := t.Context()
	for _, f := range []string{"$CONTROL/dynamic-security/v1/response", "$CONTROL/#", "$CONTROL/dynamic-security/v1"} {
		if err := c.mustBeRefused(ctx, f); err != nil {
			t.Error(err)
		}
	}
	if err := c.mustSubscribe(ctx, base+"/#"); err != nil {
		t.Fatal(err)
	}
	if code, err := c.subscribe(ctx, "#"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("subscribe to # answered %#x", code)
	}

	intruder := plugins.NewUsername("intruder", mqtt.Driver{}.UsernameLimit())
	t.Cleanup(func() {
		_, _ = p.Revoke(context.Background(), plugins.RevokeOf[*mqtt.Role]{Username: intruder})
	})
	if err := c.publish(ctx, "$CONTROL/dynamic-security/v1", controlCommand(intruder)); err != nil {
		t.Fatal(err)
	}
	// The admin's answers go to every subscriber of the response topic.
	if _, err := p.ListManaged(ctx); err != nil {
		t.Fatal(err)
	}
	// The broker handles c's messages in order: once the marker is back,
	// the createClient was handled, and any answer published before.
	marker := "marker-" + unique()
	if err := c.publish(ctx, base+"/marker", marker); err != nil {
		t.Fatal(err)
	}
	if err := c.until(ctx, base+"/marker", marker, func(m paho.Message) {
		if strings.HasPrefix(m.Topic(), "$") {
			t.Errorf("the holder received %s", m.Topic())
		}
	}); err != nil {
		t.Fatal(err)
	}
	if ok, err := p.DynsecExists(ctx, "Client", intruder); err != nil || ok {
		t.Errorf("the client the holder asked dynsec for exists = %v, %v; want false, nil", ok, err)
	}
}

// TestControlGuard: a role that allows publishing and subscribing to every
// topic still gives no access to $CONTROL.
func TestControlGuard(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	base := "cbtest/" + unique()
	cred, _ := create(t, p, parseRole(t, `acls:
  - {type: publishClientSend, topic: "#", allow: true}
  - {type: subscribePattern, topic: "#", allow: true}
  - {type: subscribeLiteral, topic: "#", allow: true}`))
	c, err := login(t.Context(), cred)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	checkNoControl(t, p, c, base)
}

// TestGuardBeatsExistingRoles: even an existing role that grants $CONTROL,
// which CheckRole refuses, grants nothing through an issued client: its
// own role's denials come first.
func TestGuardBeatsExistingRoles(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	base := "cbtest/" + unique()
	admin := "cbtest-admin-" + unique()
	if err := p.CreateDynsecRole(t.Context(), admin,
		mqtt.ACL{Type: mqtt.PublishClientSend, Topic: "$CONTROL/#", Allow: true, Priority: mqtt.MaxPriority},
		mqtt.ACL{Type: mqtt.SubscribePattern, Topic: "$CONTROL/#", Allow: true, Priority: mqtt.MaxPriority},
		mqtt.ACL{Type: mqtt.SubscribeLiteral, Topic: "$CONTROL/dynamic-security/v1/response", Allow: true},
		// dynsec never lets $CONTROL fall through to the default access,
		// for receiving either: reading the answers takes this too.
		mqtt.ACL{Type: mqtt.PublishClientReceive, Topic: "$CONTROL/#", Allow: true},
		mqtt.ACL{Type: mqtt.PublishClientSend, Topic: base + "/#", Allow: true},
		mqtt.ACL{Type: mqtt.SubscribePattern, Topic: base + "/#", Allow: true},
	); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.DeleteDynsecRole(context.Background(), admin) })

	role := &mqtt.Role{Roles: []string{admin}}
	err := p.CheckRole(t.Context(), role)
	for _, want := range []string{"allows publishClientSend \"$CONTROL/#\"", "allows subscribePattern \"$CONTROL/#\"",
		"allows subscribeLiteral \"$CONTROL/dynamic-security/v1/response\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckRole = %v, want an error saying %s", err, want)
		}
	}

	cred, _ := create(t, p, role) // Create does not ask CheckRole
	c, err := login(t.Context(), cred)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	checkNoControl(t, p, c, base)
}

// TestExistingRoles: a client gets its own role first, then the existing
// roles in the order listed, and may do what they allow.
func TestExistingRoles(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	base := "cbtest/" + unique()
	readers, writers := "cbtest-readers-"+unique(), "cbtest-writers-"+unique()
	for name, acl := range map[string]mqtt.ACL{
		readers: {Type: mqtt.SubscribePattern, Topic: base + "/shared/#", Allow: true},
		writers: {Type: mqtt.PublishClientSend, Topic: base + "/shared/#", Allow: true},
	} {
		if err := p.CreateDynsecRole(t.Context(), name, acl); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.DeleteDynsecRole(context.Background(), name) })
	}
	role := parseRole(t, fmt.Sprintf(`
acls: [{type: publishClientSend, topic: %q, allow: false, priority: 3}]
roles: [%s, %s]`, base+"/shared/secret", readers, writers))
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Fatalf("CheckRole: %v", err)
	}
	cred, _ := create(t, p, role)
	roles, prios, err := p.ClientRoles(t.Context(), cred.Username)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{cred.Username, readers, writers}; !slices.Equal(roles, want) || !slices.IsSortedFunc(prios, func(a, b int) int { return b - a }) {
		t.Errorf("the client's roles are %q with priorities %v, want %q in that order", roles, prios, want)
	}

	c, err := login(t.Context(), cred)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	if err := c.mustSubscribe(t.Context(), base+"/shared/#"); err != nil {
		t.Fatal(err)
	}
	// The own role's denial comes before the writers' allow: the message
	// to secret is dropped, the one after it arrives.
	if err := c.publish(t.Context(), base+"/shared/secret", "dropped"); err != nil {
		t.Fatal(err)
	}
	if err := c.publish(t.Context(), base+"/shared/news", "hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.until(t.Context(), base+"/shared/news", "hello", func(m paho.Message) {
		t.Errorf("received %s, which its own role denies publishing to", m.Topic())
	}); err != nil {
		t.Fatal(err)
	}
}

// TestCheckRoleRefuses: a role that does not exist is a start error.
func TestCheckRoleRefuses(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	missing := "cbtest-missing-" + unique()
	err := p.CheckRole(t.Context(), &mqtt.Role{Roles: []string{missing}})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("roles[0]: there is no dynsec role %q", missing)) {
		t.Errorf("CheckRole of a missing role = %v", err)
	}
	if err := p.CheckRole(t.Context(), &mqtt.Role{ACLs: []mqtt.ACL{{Type: "publish", Topic: "a", Allow: true}}}); err == nil {
		t.Error("CheckRole of a role built by hand with a bad ACL type succeeded")
	}
	if err := p.CheckRole(t.Context(), nil); err == nil {
		t.Error("CheckRole(nil) succeeded")
	}
}

// TestCreateAllOrNothing: when createClient fails (here: a role that does
// not exist), the client's own role is deleted again; a username that
// exists is refused and left as it is.
func TestCreateAllOrNothing(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	base := "cbtest/" + unique()
	username := plugins.NewUsername("test", mqtt.Driver{}.UsernameLimit())
	_, err := p.Create(t.Context(), plugins.CreateOf[*mqtt.Role]{
		Username: username, Password: plugins.NewPassword(), Role: "test",
		Spec: &mqtt.Role{Roles: []string{"cbtest-missing-" + unique()}},
	})
	var ce *mqtt.CommandError
	if !errors.As(err, &ce) || ce.Command != "createClient" || ce.Message != "Role not found" {
		t.Errorf("Create with a missing role = %v, want dynsec createClient: Role not found", err)
	}
	for _, kind := range []string{"Client", "Role"} {
		if ok, err := p.DynsecExists(t.Context(), kind, username); err != nil || ok {
			t.Errorf("after the failed Create, the %s %s exists = %v, %v; want false, nil", kind, username, ok, err)
		}
	}

	cred, _ := create(t, p, parseRole(t, topicRole(base)))
	_, err = p.Create(t.Context(), plugins.CreateOf[*mqtt.Role]{
		Username: cred.Username, Password: plugins.NewPassword(), Role: "test", Spec: parseRole(t, topicRole(base)),
	})
	if !errors.As(err, &ce) || ce.Message != "Role already exists" {
		t.Errorf("Create of an existing username = %v, want dynsec createRole: Role already exists", err)
	}
	c, err := login(t.Context(), cred)
	if err != nil {
		t.Fatalf("the first client no longer logs in after the second Create failed: %v", err)
	}
	c.Disconnect(0)
}

// TestRevokeWithoutState: an orphan (no State), and a role left without its
// client, are listed by ListManaged and removed by Revoke.
func TestRevokeWithoutState(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	cred, _ := create(t, p, parseRole(t, topicRole("cbtest/"+unique())))
	orphanRole := plugins.NewUsername("orphan", mqtt.Driver{}.UsernameLimit())
	if err := p.CreateDynsecRole(t.Context(), orphanRole); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.DeleteDynsecRole(context.Background(), orphanRole) })

	users, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{cred.Username, orphanRole} {
		if !slices.ContainsFunc(users, func(u plugins.ManagedUser) bool { return u.Username == want }) {
			t.Errorf("ListManaged does not report %s", want)
		}
	}
	for _, u := range users {
		if !strings.HasPrefix(u.Username, plugins.ManagedPrefix) {
			t.Errorf("ListManaged reports %s, which credbroker did not make", u.Username)
		}
	}
	if slices.ContainsFunc(users, func(u plugins.ManagedUser) bool { return u.Username == b.user }) {
		t.Error("ListManaged reports the admin")
	}

	for _, name := range []string{cred.Username, orphanRole} {
		if _, err := p.Revoke(t.Context(), plugins.RevokeOf[*mqtt.Role]{Username: name}); err != nil {
			t.Fatalf("Revoke %s without State: %v", name, err)
		}
		for _, kind := range []string{"Client", "Role"} {
			if ok, err := p.DynsecExists(t.Context(), kind, name); err != nil || ok {
				t.Errorf("after Revoke, the %s %s exists = %v, %v; want false, nil", kind, name, ok, err)
			}
		}
	}
}

// TestRevokeRefuses names and states credbroker did not make.
func TestRevokeRefuses(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	user := plugins.NewUsername("test", mqtt.Driver{}.UsernameLimit())
	for name, req := range map[string]plugins.RevokeOf[*mqtt.Role]{
		"Unmanaged":      {Username: b.user},
		"UnmanagedRole":  {Username: user, State: []byte(`{"v":1,"role":"admin"}`)},
		"UnknownVersion": {Username: user, State: []byte(`{"v":2,"role":"` + user + `"}`)},
		"NotJSON":        {Username: user, State: []byte(`cb_x`)},
	} {
		if _, err := p.Revoke(t.Context(), req); err == nil {
			t.Errorf("%s: Revoke succeeded", name)
		}
	}
	if ok, err := p.DynsecExists(t.Context(), "Client", b.user); err != nil || !ok {
		t.Fatalf("the admin exists = %v, %v after the refused revokes", ok, err)
	}
}

// TestOpenErrors: a wrong admin password is refused, not unavailable, and
// never quoted; a closed port is unavailable.
func TestOpenErrors(t *testing.T) {
	b := testBroker(t)
	wrong := plugins.NewPassword()
	t.Setenv("CBTEST_MQTT_WRONG", wrong.Reveal())
	bad := b
	bad.passwordRef = "env:CBTEST_MQTT_WRONG"
	conn, err := mqtt.Driver{}.ParseConnection(decoder(bad.connection()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = plugins.Open(t.Context(), mqtt.New(), conn)
	switch {
	case err == nil:
		t.Fatal("Open with a wrong admin password succeeded")
	case plugins.IsUnavailable(err):
		t.Errorf("Open with a wrong password = %v, which says unavailable", err)
	case strings.Contains(err.Error(), wrong.Reveal()):
		t.Errorf("the error quotes the password: %v", plugins.Sanitize(err, wrong))
	}

	closed := b
	closed.url = "tcp://127.0.0.1:1"
	conn, err = mqtt.Driver{}.ParseConnection(decoder(closed.connection()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plugins.Open(t.Context(), mqtt.New(), conn); !plugins.IsUnavailable(err) {
		t.Errorf("Open on a closed port = %v, want an error matching ErrUnavailable", err)
	}
}

// TestWarnings: the test broker is on loopback and denies by default, so
// there is nothing to warn about.
func TestWarnings(t *testing.T) {
	b := testBroker(t)
	conn, err := mqtt.Driver{}.ParseConnection(decoder(b.connection()))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plugins.Open(t.Context(), mqtt.New(), conn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if w := p.(plugins.Warner).Warnings(t.Context()); len(w) != 0 {
		t.Errorf("Warnings = %q, want none", w)
	}
}

// TestClosed: calls after Close fail.
func TestClosed(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(t.Context()); err == nil {
		t.Error("Check after Close succeeded")
	}
}

// TestReconnects: when the broker drops the admin connection (here: another
// client logs in with its client id, which takes the session over), the
// next call dials a new one.
func TestReconnects(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	id, lost := p.AdminConn()
	if id == "" || !strings.HasPrefix(id, "credbroker-") || len(id) < len("credbroker-")+12 {
		t.Fatalf("the admin's client id is %q, want credbroker- and 12 random characters", id)
	}
	taker, err := connectAs(t.Context(), b.url, id, b.user, b.password)
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Disconnect(0)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the admin connection outlived a takeover of its client id by 10 s")
	}
	if err := p.Check(t.Context()); err != nil {
		t.Fatalf("Check after the admin connection was lost: %v", err)
	}
	if again, _ := p.AdminConn(); again == id {
		t.Errorf("the new admin connection reuses the client id %s", id)
	}
	if _, err := p.ListManaged(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestControlGuardReceive: a holder whose roles let it subscribe to #
// (its own ACLs, or an existing role's, which also lets it receive
// $CONTROL and which CheckRole accepts) receives none of the answers to the
// admin's commands, whatever way it subscribes:
//
//   - through a shared subscription to the response topic, which dynsec's
//     subscribe check lets through (the guard's subscribePattern denial
//     does not match $share/…), and through $CONTROL/#;
//   - with the guard's subscribePattern denial taken out of its own role,
//     which stands for any way past the subscribe check: the subscription
//     to $CONTROL/# is then granted, and the guard's publishClientReceive
//     denial alone keeps the answers from it.
func TestControlGuardReceive(t *testing.T) {
	b := testBroker(t)
	p := open(t, b)
	reader := "cbtest-reader-" + unique()
	if err := p.CreateDynsecRole(t.Context(), reader,
		mqtt.ACL{Type: mqtt.SubscribePattern, Topic: "#", Allow: true},
		mqtt.ACL{Type: mqtt.SubscribeLiteral, Topic: "#", Allow: true},
		mqtt.ACL{Type: mqtt.PublishClientSend, Topic: "#", Allow: true},
		mqtt.ACL{Type: mqtt.PublishClientReceive, Topic: "$CONTROL/#", Allow: true},
	); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.DeleteDynsecRole(context.Background(), reader) })
	existing := &mqtt.Role{Roles: []string{reader}}
	if err := p.CheckRole(t.Context(), existing); err != nil {
		t.Fatalf("CheckRole(%s) = %v; the case is one a config may hold", reader, err)
	}

	for name, role := range map[string]*mqtt.Role{
		"own ACLs": parseRole(t, `acls:
  - {type: publishClientSend, topic: "#", allow: true}
  - {type: subscribePattern, topic: "#", allow: true}
  - {type: subscribeLiteral, topic: "#", allow: true}
  - {type: publishClientReceive, topic: "#", allow: true}`),
		"existing role": existing,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			cred, _ := create(t, p, role)
			c, err := login(ctx, cred)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Disconnect(0)
			for _, f := range []string{"$share/x/$CONTROL/dynamic-security/v1/response", "$CONTROL/#"} {
				code, err := c.subscribe(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("subscribe to %s answered %#x", f, code)
			}
			receivesNoAnswer(t, p, c)

			if err := p.RemoveRoleACL(ctx, cred.Username, mqtt.SubscribePattern, "$CONTROL/#"); err != nil {
				t.Fatalf("removeRoleACL: %v", err)
			}
			if err := c.mustSubscribe(ctx, "$CONTROL/#"); err != nil {
				t.Fatalf("without the subscribe denial: %v", err)
			}
			receivesNoAnswer(t, p, c)
		})
	}
}

// receivesNoAnswer has the admin run a command and fails if c receives
// anything on a $ topic before a marker it publishes after the answer.
func receivesNoAnswer(t *testing.T, p *mqtt.Plugin, c *client) {
	t.Helper()
	ctx := t.Context()
	base := "cbtest/" + unique()
	if err := c.mustSubscribe(ctx, base+"/#"); err != nil {
		t.Fatal(err)
	}
	// dynsec publishes the answer to every subscriber before the admin,
	// which waits for it, gets it; the marker c publishes after that
	// reaches c after the answer would have.
	if _, err := p.ListManaged(ctx); err != nil {
		t.Fatal(err)
	}
	marker := "marker-" + unique()
	if err := c.publish(ctx, base+"/marker", marker); err != nil {
		t.Fatal(err)
	}
	if err := c.until(ctx, base+"/marker", marker, func(m paho.Message) {
		if strings.HasPrefix(m.Topic(), "$") {
			t.Errorf("the holder received %s: %.40q…", m.Topic(), m.Payload())
		}
	}); err != nil {
		t.Fatal(err)
	}
}
