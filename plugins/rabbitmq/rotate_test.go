package rabbitmq_test

import (
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/rabbitmq"
	"github.com/credbroker/credbroker/secret"
)

// whoami reports whether name logs in to the management API with password.
func whoami(b bundle, name string, password secret.Value) error {
	c, err := rabbithole.NewClient(b.admin.endpoint, name, password.Reveal())
	if err != nil {
		return err
	}
	_, err = c.Whoami()
	return plugins.Sanitize(err, password)
}

// TestRotateRoot rotates a dedicated administrator: the old password is
// refused, the new one works, the user keeps its tags and permissions, and
// both the plugin that rotated and one opened with the new password (as the
// broker reopens it) issue and revoke users.
func TestRotateRoot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	name, oldPassword := uniqueName("cbtest_rotadmin"), secret.New(rand.Text())
	b.admin.addUser(t, name, oldPassword.Reveal(), "administrator", "monitoring")
	res, err := b.admin.client.UpdatePermissionsIn(b.vhost, name, rabbithole.Permissions{Configure: "^x$", Write: ".*", Read: ".*"})
	check(t, "set the admin's permissions", res, err)
	conn := connection(t, b.admin.endpoint, name, oldPassword.Reveal(), b.amqpURL, "")
	p := open(t, conn)
	if !plugins.CanRotateRoot(p) {
		t.Fatal("the rabbitmq plugin cannot rotate")
	}
	role := parseRole(t, grantsRole(b.vhost))

	newPassword := plugins.NewPassword()
	if _, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword}); err != nil {
		t.Fatalf("RotateRoot: %v", err)
	}
	if err := whoami(b, name, oldPassword); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("login with the old password after the rotation = %v, want 401", err)
	}
	if err := whoami(b, name, newPassword); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
	if _, tags := b.admin.user(t, name); !slices.Equal(slices.Sorted(slices.Values(tags)), []string{"administrator", "monitoring"}) {
		t.Errorf("the admin's tags after the rotation are %q, want administrator and monitoring", tags)
	}
	perm, err := b.admin.client.GetPermissionsIn(b.vhost, name)
	if err != nil || perm.Configure != "^x$" {
		t.Errorf("the admin's permissions after the rotation: %+v, %v", perm, err)
	}

	// The plugin that rotated goes on with the new password.
	cred := create(t, p, role)
	if err := revoke(t.Context(), p, cred.Username); err != nil {
		t.Errorf("Revoke through the plugin that rotated: %v", err)
	}

	if _, err := plugins.Open(t.Context(), rabbitmq.New(), conn); !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open with the config's old password = %v, want unavailable", err)
	}
	q, err := plugins.OpenAs(t.Context(), rabbitmq.New(), conn, newPassword)
	if err != nil {
		t.Fatalf("OpenAs with the new password: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	after := create(t, q, role)
	if err := revoke(t.Context(), q, after.Username); err != nil {
		t.Errorf("Revoke after the rotation: %v", err)
	}
	if exists, _ := b.admin.user(t, after.Username); exists {
		t.Error("the user issued after the rotation is still there")
	}

	if _, err := q.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{}); err == nil {
		t.Error("RotateRoot with an empty password succeeded")
	}
	if _, err := (rabbitmq.Driver{}).WithAdminPassword(nil, secret.New("x")); err == nil {
		t.Error("WithAdminPassword(nil) succeeded")
	}
}

// TestRotateRootErrorHidesPassword: a rotation the server refuses (the
// admin user was deleted under the plugin) is an error without the new
// password.
func TestRotateRootErrorHidesPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	name, password := uniqueName("cbtest_rotadmin"), rand.Text()
	res, err := b.admin.client.PutUser(name, rabbithole.UserSettings{Name: name, Password: password, Tags: []string{"administrator"}})
	check(t, "create user "+name, res, err)
	p := open(t, connection(t, b.admin.endpoint, name, password, b.amqpURL, ""))
	res, err = b.admin.client.DeleteUser(name)
	check(t, "delete user "+name, res, err)

	newPassword := plugins.NewPassword()
	_, err = p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword})
	if err == nil {
		t.Fatal("RotateRoot of a deleted admin succeeded")
	}
	if strings.Contains(err.Error(), newPassword.Reveal()) || strings.Contains(err.Error(), password) {
		t.Errorf("the error holds a password: %v", plugins.Sanitize(err, newPassword))
	}
	if exists, _ := b.admin.user(t, name); exists {
		t.Error("the failed rotation made the user again")
	}
}
