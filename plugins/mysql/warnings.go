package mysql

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/credbroker/credbroker/plugins"
)

var _ plugins.Warner = (*Plugin)(nil)

// needlessAdminPrivileges are global privileges the admin never needs;
// holding them makes a leaked admin DSN a compromise of the whole server.
var needlessAdminPrivileges = []string{"SUPER", "FILE", "SHUTDOWN", "RELOAD", "SET USER", "SET_USER_ID", "SYSTEM_USER", "BINLOG ADMIN", "REPLICATION SLAVE"}

// Warnings reports what works but is riskier than it needs to be: an admin
// DSN in plain text (or with TLS unverified) to a host off loopback, an admin
// holding global privileges credbroker never uses, and a server without
// ACCOUNT LOCK. Warnings never hold a secret.
func (p *Plugin) Warnings(ctx context.Context) []string {
	var warnings []string
	if w := transportWarning(p.adminNet, p.adminAddr, p.adminTLS); w != "" {
		warnings = append(warnings, w)
	}
	if !p.canLock {
		warnings = append(warnings, fmt.Sprintf("the server (%s) has no ALTER USER … ACCOUNT LOCK (MariaDB 10.4+, MySQL 5.7.6+): "+
			"revoke locks the login out by setting a password nobody holds instead, which leaves no trace in the account's lock status", p.version))
	}
	current, grantee, err := p.admin(ctx)
	if err != nil {
		return warnings
	}
	held, err := p.globalPrivileges(ctx, grantee)
	if err != nil {
		return warnings
	}
	var needless []string
	for _, priv := range needlessAdminPrivileges {
		if held[priv] {
			needless = append(needless, priv)
		}
	}
	if len(needless) > 0 {
		warnings = append(warnings, fmt.Sprintf("admin %s holds %s globally, which credbroker never uses: a leaked admin DSN "+
			"then gives away the whole server. It needs CREATE USER, PROCESS, CONNECTION ADMIN (MySQL: CONNECTION_ADMIN%s) "+
			"and SELECT on mysql.* globally, and on the application's databases the privileges its roles grant, "+
			"WITH GRANT OPTION (see docs/security.md)", current, strings.Join(needless, ", "), mysqlExtra(p.mariaDB)))
	}
	return warnings
}

func mysqlExtra(mariaDB bool) string {
	if mariaDB {
		return ""
	}
	return ", SET_ANY_DEFINER or SET_USER_ID"
}

// transportWarning warns about an admin connection to a host off loopback
// without verified TLS, where the admin's password and every statement
// (issued users' password hashes included) cross the network readable.
func transportWarning(network, addr, tls string) string {
	if !strings.HasPrefix(network, "tcp") {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if plugins.IsLoopback(host) {
		return ""
	}
	switch {
	case tls == "" || tls == "false":
		return fmt.Sprintf("the admin DSN connects to %s without TLS: the admin's login and every statement, issued users' "+
			"password hashes included, cross the network readable; add tls=true (or a registered TLS config) to the DSN", host)
	case slices.Contains([]string{"skip-verify", "preferred"}, tls):
		return fmt.Sprintf("the admin DSN connects to %s with tls=%s, which does not verify the server: anyone on the path "+
			"can read the admin's statements; use tls=true", host, tls)
	}
	return ""
}
