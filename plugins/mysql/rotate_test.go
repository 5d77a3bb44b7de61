package mysql_test

import (
	"errors"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/secret"
)

// TestRotateRoot rotates the password of a dedicated admin with the grants
// the plugin needs: afterwards the old password is refused, the new one logs
// in, and the plugin opened with it (as the broker reopens it) issues and
// revokes users.
func TestRotateRoot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const oldPassword = "rotate-old-admin-pw"
	adminDSN := adminUser(t, b, oldPassword,
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {user}",
		"GRANT SELECT ON mysql.* TO {user}",
		"GRANT SELECT ON `"+b.database+"`.* TO {user} WITH GRANT OPTION")
	conn := connection(t, adminDSN, "")
	p := open(t, conn)
	if !plugins.CanRotateRoot(p) {
		t.Fatal("the mysql plugin cannot rotate")
	}
	role := parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]`)
	before := create(t, p, role)

	newPassword := plugins.NewPassword()
	if _, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword}); err != nil {
		t.Fatalf("RotateRoot: %v", err)
	}
	// The plugin's open pool keeps working.
	if err := revoke(t.Context(), p, before); err != nil {
		t.Errorf("Revoke through the plugin opened before the rotation: %v", err)
	}

	cfg, err := gomysql.ParseDSN(adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = queryRow(t, adminDSN, "SELECT 1", nil, &n)
	if !isError(err, erAccessDenied) {
		t.Errorf("login with the old password after the rotation = %v, want access denied", err)
	}
	cfg.Passwd = newPassword.Reveal()
	if err := queryRow(t, cfg.FormatDSN(), "SELECT 1", nil, &n); err != nil {
		t.Errorf("login with the new password: %v", plugins.Sanitize(err, newPassword))
	}

	// Opened as the broker does after a rotation: the config's reference
	// still holds the old password, the store the new one.
	if _, err := plugins.Open(t.Context(), mysql.New(), conn); !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open with the config's old password = %v, want unavailable", err)
	}
	q, err := plugins.OpenAs(t.Context(), mysql.New(), conn, newPassword)
	if err != nil {
		t.Fatalf("OpenAs with the new password: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	if err := q.Check(t.Context()); err != nil {
		t.Errorf("Check after the rotation: %v", err)
	}
	after := create(t, q, role)
	if err := revoke(t.Context(), q, after); err != nil {
		t.Errorf("Revoke after the rotation: %v", err)
	}
	if accounts(t, b.adminDSN, after.Username) != 0 {
		t.Error("the user issued after the rotation was not dropped")
	}

	// A second rotation, from the reopened plugin.
	second := plugins.NewPassword()
	if _, err := q.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: second}); err != nil {
		t.Fatalf("second RotateRoot: %v", err)
	}
	if err := queryRow(t, cfg.FormatDSN(), "SELECT 1", nil, &n); !isError(err, erAccessDenied) {
		t.Errorf("login with the first rotated password after the second rotation = %v, want access denied", plugins.Sanitize(err, newPassword))
	}
}

// TestRotateRootErrorHidesPassword: a failed rotation (an admin without
// CREATE USER, which ALTER USER of a named account needs on MariaDB and
// MySQL alike) is an error without the new password, and the old password
// still works.
func TestRotateRootErrorHidesPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const oldPassword = "rotate-weak-admin-pw"
	weak := adminUser(t, b, oldPassword, "GRANT PROCESS ON *.* TO {user}")
	p := open(t, connection(t, weak, ""))
	newPassword := plugins.NewPassword()
	_, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: newPassword})
	if err == nil {
		t.Fatal("RotateRoot by an admin without CREATE USER succeeded")
	}
	if strings.Contains(err.Error(), newPassword.Reveal()) || strings.Contains(err.Error(), mysql.NativePasswordHash(newPassword.Reveal())) {
		t.Errorf("the error holds the new password or its hash: %v", plugins.Sanitize(err, newPassword))
	}
	if strings.Contains(err.Error(), oldPassword) {
		t.Errorf("the error holds the old password: %v", err)
	}
	var n int
	if err := queryRow(t, weak, "SELECT 1", nil, &n); err != nil {
		t.Errorf("login with the old password after a failed rotation: %v", err)
	}
	if _, err := p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{}); err == nil {
		t.Error("RotateRoot with an empty password succeeded")
	}
	if _, err := (mysql.Driver{}).WithAdminPassword(nil, secret.New("x")); err == nil {
		t.Error("WithAdminPassword(nil) succeeded")
	}
}
