package redis_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/redis"
	"github.com/credbroker/credbroker/secret"
)

// rotAdminRules are what the broker's admin user needs.
var rotAdminRules = []any{"on", "~*", "&*", "+@all"}

// makeAdmin makes an ACL admin user with password on the server admin
// reaches, deleted when the test ends, and returns its name.
func makeAdmin(t *testing.T, admin *goredis.Client, password string) string {
	t.Helper()
	name := "cbtest_rotadmin_" + strings.ToLower(plugins.NewPassword().Reveal()[:8])
	args := append([]any{"acl", "setuser", name, ">" + password}, rotAdminRules...)
	if err := admin.Do(t.Context(), args...).Err(); err != nil {
		t.Fatalf("make the admin user: %v", err)
	}
	t.Cleanup(func() { _ = admin.Do(context.Background(), "acl", "deluser", name).Err() })
	return name
}

// authAs reports whether username logs in at addr with password.
func authAs(t *testing.T, addr, username string, password secret.Value) error {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, Username: username, Password: password.Reveal(),
		DisableIdentity: true, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	return plugins.Sanitize(c.Ping(t.Context()).Err(), password)
}

// TestRotateRoot rotates a dedicated ACL admin on a server with an ACL
// file: the old password is refused, the new one works, also after a
// restart; the plugin opened with it issues and revokes users; the file and
// the errors never hold the plaintext.
func TestRotateRoot(t *testing.T) {
	t.Parallel()
	s := startServer(t, "users.acl")
	oldPassword := secret.New("rotate-old-redis-admin-pw")
	name := makeAdmin(t, s.admin(), oldPassword.Reveal())
	conn := connection(t, "addr: "+s.addr()+"\nusername: "+name+"\npassword: "+secretFile(t, oldPassword.Reveal()))
	p := open(t, conn)
	if !plugins.CanRotateRoot(p) {
		t.Fatal("the redis plugin cannot rotate")
	}
	role := parseRole(t, ordersRole)
	before := create(t, p, "rot", role)

	newPassword := plugins.NewPassword()
	if _, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword}); err != nil {
		t.Fatalf("RotateRoot: %v", err)
	}
	if err := revoke(t.Context(), p, before.Username); err != nil {
		t.Errorf("Revoke through the plugin opened before the rotation: %v", err)
	}
	if err := authAs(t, s.addr(), name, oldPassword); !goredis.IsAuthError(err) {
		t.Errorf("login with the old password after the rotation = %v, want an auth error", err)
	}
	if err := authAs(t, s.addr(), name, newPassword); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
	// The broker's recovery sets the current password again before a
	// roll-back: with a plugin opened with it, that changes nothing and the
	// password still logs in (adding and dropping it would leave none).
	again := open(t, connection(t, "addr: "+s.addr()+"\nusername: "+name+"\npassword: "+secretFile(t, newPassword.Reveal())))
	if _, err := again.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword}); err != nil {
		t.Errorf("RotateRoot to the current password: %v", err)
	}
	if err := authAs(t, s.addr(), name, newPassword); err != nil {
		t.Errorf("login after setting the current password again: %v", err)
	}
	if b, _ := os.ReadFile(s.acl); strings.Contains(string(b), newPassword.Reveal()) {
		t.Error("the ACL file holds the new password in plain text")
	}

	if _, err := plugins.Open(t.Context(), redis.New(), conn); !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open with the config's old password = %v, want unavailable", err)
	}
	q, err := plugins.OpenAs(t.Context(), redis.New(), conn, newPassword)
	if err != nil {
		t.Fatalf("OpenAs with the new password: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	if err := q.Check(t.Context()); err != nil {
		t.Errorf("Check after the rotation: %v", err)
	}
	after := create(t, q, "rot", role)
	if err := revoke(t.Context(), q, after.Username); err != nil {
		t.Errorf("Revoke after the rotation: %v", err)
	}

	// The ACL file has it: a restart keeps the new password, not the old.
	s.stop()
	s.restart()
	if err := authAs(t, s.addr(), name, newPassword); err != nil {
		t.Errorf("login with the new password after a restart: %v", err)
	}
	if err := authAs(t, s.addr(), name, oldPassword); !goredis.IsAuthError(err) {
		t.Errorf("login with the old password after a restart = %v, want an auth error", err)
	}
}

// TestRotateRootKeepsOtherPasswords: a second password of the admin user
// (another operator's) survives the rotation; only the one the broker used
// goes.
func TestRotateRootKeepsOtherPasswords(t *testing.T) {
	t.Parallel()
	s := startServer(t, "users.acl")
	oldPassword := secret.New("rotate-old-redis-admin-pw")
	other := secret.New("another-operators-pw")
	name := makeAdmin(t, s.admin(), oldPassword.Reveal())
	if err := s.admin().Do(t.Context(), "acl", "setuser", name, ">"+other.Reveal()).Err(); err != nil {
		t.Fatal(err)
	}
	p := open(t, connection(t, "addr: "+s.addr()+"\nusername: "+name+"\npassword: "+secretFile(t, oldPassword.Reveal())))
	newPassword := plugins.NewPassword()
	if _, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword}); err != nil {
		t.Fatalf("RotateRoot: %v", err)
	}
	if err := authAs(t, s.addr(), name, other); err != nil {
		t.Errorf("login with the admin's other password after the rotation: %v", err)
	}
	if err := authAs(t, s.addr(), name, oldPassword); !goredis.IsAuthError(err) {
		t.Errorf("login with the old password after the rotation = %v, want an auth error", err)
	}
}

// TestRotateRootReassertRetires is the broker's recovery of a rotation a
// broker abandoned after it added the new password (step 1) and died: the
// admin has both, and the ACL file neither the new one nor the old one
// gone. Setting the new password again with Retire the old one leaves the
// admin with the new one alone, also after a restart of the server; the
// plugin tells the password it logged in with.
func TestRotateRootReassertRetires(t *testing.T) {
	t.Parallel()
	s := startServer(t, "users.acl")
	oldPassword := secret.New("rotate-old-redis-admin-pw")
	name := makeAdmin(t, s.admin(), oldPassword.Reveal())
	if err := s.admin().Do(t.Context(), "acl", "save").Err(); err != nil {
		t.Fatal(err)
	}
	newPassword := plugins.NewPassword()
	// What the dead broker did: the new password added, nothing saved.
	if err := s.admin().Do(t.Context(), "acl", "setuser", name, ">"+newPassword.Reveal()).Err(); err != nil {
		t.Fatal(err)
	}
	p := open(t, connection(t, "addr: "+s.addr()+"\nusername: "+name+"\npassword: "+secretFile(t, newPassword.Reveal())))
	if pw, ok := plugins.AdminPasswordOf(p); !ok || pw.Reveal() != newPassword.Reveal() {
		t.Errorf("AdminPasswordOf = %v, want the password it logged in with", ok)
	}
	_, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword, Retire: oldPassword})
	if err != nil {
		t.Fatalf("RotateRoot to the current password, retiring the old one: %v", err)
	}
	for _, restart := range []bool{false, true} {
		if restart {
			s.stop()
			s.restart()
		}
		if err := authAs(t, s.addr(), name, oldPassword); !goredis.IsAuthError(err) {
			t.Errorf("login with the retired password (restarted: %v) = %v, want an auth error", restart, err)
		}
		if err := authAs(t, s.addr(), name, newPassword); err != nil {
			t.Errorf("login with the current password (restarted: %v): %v", restart, err)
		}
	}
	// Retiring a password the admin no longer has is no error.
	q := open(t, connection(t, "addr: "+s.addr()+"\nusername: "+name+"\npassword: "+secretFile(t, newPassword.Reveal())))
	if _, err := q.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword, Retire: oldPassword}); err != nil {
		t.Errorf("RotateRoot retiring a password the admin does not have: %v", err)
	}
}

// TestRotateRootRefused: the shared server keeps no ACL file, so rotating a
// dedicated ACL admin there is refused (a restart would bring back the old
// password) and changes nothing; the default user (requirepass) is refused
// too. No error holds the new password.
func TestRotateRootRefused(t *testing.T) {
	t.Parallel()
	u, shared := sharedRedis(t)
	admin := adminClient(t, u)
	if file, err := admin.ConfigGet(t.Context(), "aclfile").Result(); err != nil || file["aclfile"] != "" {
		t.Skipf("the shared Redis keeps an ACL file (%v, %v): this test needs one without", file, err)
	}
	oldPassword := secret.New("rotate-refused-redis-admin-pw")
	name := makeAdmin(t, admin, oldPassword.Reveal())
	c := connection(t, "addr: "+shared.Addr+"\nusername: "+name+"\npassword: "+secretFile(t, oldPassword.Reveal()))
	if shared.TLS.Enabled {
		t.Skip("the shared Redis speaks TLS")
	}
	tests := map[string]struct {
		conn *redis.Connection
		want string
	}{
		"NoACLFile":   {c, "ACL file"},
		"DefaultUser": {shared, "default user"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := open(t, tt.conn)
			newPassword := plugins.NewPassword()
			_, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RotateRoot = %v, want an error naming %q", err, tt.want)
			}
			if strings.Contains(err.Error(), newPassword.Reveal()) {
				t.Error("the error holds the new password")
			}
		})
	}
	if err := authAs(t, shared.Addr, name, oldPassword); err != nil {
		t.Errorf("login with the old password after the refused rotation: %v", err)
	}
	if _, err := (redis.Driver{}).WithAdminPassword(nil, secret.New("x")); err == nil {
		t.Error("WithAdminPassword(nil) succeeded")
	}
}
