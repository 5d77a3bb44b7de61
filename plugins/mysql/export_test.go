package mysql

// MarkerRole returns the name of the marker role that records the
// revocation statements of role (a *Role from ParseRole), or "" when it has
// none, so tests can drop it when they end.
func MarkerRole(role any) string {
	r, err := asRole(role)
	if err != nil || r.revocationKey == "" {
		return ""
	}
	return revocationRolePrefix + r.revocationKey
}

// WithoutAccountLock makes p behave as on a server without ALTER USER …
// ACCOUNT LOCK (MariaDB before 10.4, MySQL before 5.7.6).
func WithoutAccountLock(p any) { p.(*Plugin).canLock = false }
