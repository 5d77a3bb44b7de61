package redis_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/redis"
)

// TestACLFile runs a server that keeps its users in an ACL file and
// restarts it: a live user survives the restart, password and all, and a
// revoked one does not come back.
func TestACLFile(t *testing.T) {
	t.Parallel()
	s := startServer(t, "users.acl")
	admin := s.admin()
	p := open(t, connection(t, "addr: "+s.addr()))
	if err := p.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	role := parseRole(t, ordersRole)
	cred := create(t, p, "aclfile", role)
	if !fileHasUser(t, s.acl, cred.Username) {
		t.Fatal("the ACL file does not hold the user after Create")
	}
	if b, _ := os.ReadFile(s.acl); strings.Contains(string(b), cred.Password.Reveal()) {
		t.Fatal("the ACL file holds the plaintext password")
	}

	s.stop()
	s.restart()
	if !hasUser(t, admin, cred.Username) {
		t.Fatal("the user is gone after a restart")
	}
	session, err := login(t.Context(), cred)
	if err != nil {
		t.Fatalf("login after a restart: %v", err)
	}
	if err := session.CheckGrants(t.Context()); err != nil {
		t.Errorf("grants after a restart: %v", err)
	}
	_ = session.Close()

	if err := revoke(t.Context(), p, cred.Username); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if fileHasUser(t, s.acl, cred.Username) {
		t.Fatal("the ACL file still holds the user after Revoke")
	}
	s.stop()
	s.restart()
	if hasUser(t, admin, cred.Username) {
		t.Error("the revoked user came back after a restart")
	}
	if _, err := login(t.Context(), cred); err == nil {
		t.Error("the revoked credential logs in after a restart")
	}
}

// TestSaveFails makes ACL SAVE fail (the ACL file's directory is gone):
// Create fails and leaves no user behind, Revoke fails until the file can be
// written again, because a restart would otherwise bring the user back.
func TestSaveFails(t *testing.T) {
	t.Parallel()
	s := startServer(t, "acl/users.acl")
	admin := s.admin()
	p := open(t, connection(t, "addr: "+s.addr()))
	role := parseRole(t, ordersRole)
	live := create(t, p, "savefails", role)

	aclDir := filepath.Dir(s.acl)
	if err := os.RemoveAll(aclDir); err != nil {
		t.Fatal(err)
	}
	username := plugins.NewUsername("savefails", redis.Driver{}.UsernameLimit())
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Spec: role,
	})
	if err == nil || !strings.Contains(err.Error(), "ACL SAVE") {
		t.Fatalf("Create with an unwritable ACL file = %v, want an error naming ACL SAVE", err)
	}
	if hasUser(t, admin, username) {
		t.Error("a failed Create left the user behind")
	}

	if err := revoke(t.Context(), p, live.Username); err == nil {
		t.Fatal("Revoke with an unwritable ACL file succeeded: a restart would bring the user back")
	}
	if hasUser(t, admin, live.Username) {
		t.Error("Revoke did not delete the user from memory")
	}
	if err := os.MkdirAll(aclDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := revoke(t.Context(), p, live.Username); err != nil {
		t.Fatalf("Revoke once the file can be written: %v", err)
	}
	if fileHasUser(t, s.acl, live.Username) {
		t.Error("the ACL file holds the revoked user")
	}
}

// TestOpenRefusesClusterNodeAsAddr: addr naming a cluster node would make
// users on that node alone.
func TestOpenRefusesClusterNodeAsAddr(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-port", strconv.Itoa(freePort(t)))
	_, err := plugins.Open(t.Context(), redis.New(), connection(t, "addr: "+s.addr()))
	if err == nil || !strings.Contains(err.Error(), "addrs") || errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open of a cluster node with addr = %v, want an error pointing at addrs", err)
	}
}
