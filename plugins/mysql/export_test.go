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
