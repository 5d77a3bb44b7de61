package authn

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// LoginConfig is the `login:` block of an issuer: it offers the issuer to
// people at a terminal. `credbroker login` reads it from the broker
// (GET /v1/login-config) and runs the OIDC authorization code flow with PKCE
// against the issuer, as the public client ClientID; the ID token it gets
// is what the CLI then sends.
type LoginConfig struct {
	// ClientID is the OAuth 2.0 client of the CLI at the issuer: a public
	// client (no secret) allowed the authorization_code and refresh_token
	// grants and the redirect URI http://127.0.0.1/callback (any port, RFC
	// 8252). It must also be one of the issuer's audiences: an ID token's
	// aud is the client id.
	ClientID string `yaml:"client_id"`
	// Scopes are requested at login. Default: openid, offline_access (a
	// refresh token, so the login outlives one ID token), email, profile.
	// openid is required.
	Scopes []string `yaml:"scopes"`
}

// defaultLoginScopes are requested when a login block lists none.
var defaultLoginScopes = []string{"openid", "offline_access", "email", "profile"}

// LoginScopes returns the scopes login requests, with the default filled in.
func (l *LoginConfig) LoginScopes() []string {
	if len(l.Scopes) == 0 {
		return slices.Clone(defaultLoginScopes)
	}
	return slices.Clone(l.Scopes)
}

// validate checks the login block of issuer c; each error starts with the
// YAML path under the issuer.
func (l *LoginConfig) validate(c IssuerConfig) []error {
	if l == nil {
		return nil
	}
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("login.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch {
	case l.ClientID == "":
		add("client_id", "is required: the OAuth client id of credbroker login at this issuer (a public client with the redirect URI http://127.0.0.1/callback)")
	case strings.ContainsFunc(l.ClientID, func(r rune) bool { return r <= ' ' }):
		add("client_id", "%q holds whitespace or control characters", l.ClientID)
	case !slices.Contains(c.Audiences, l.ClientID):
		add("client_id", "%q is not one of audiences %q: the ID tokens login gets carry aud = the client id, so add %q to audiences", l.ClientID, c.Audiences, l.ClientID)
	}
	if len(l.Scopes) > 0 && !slices.Contains(l.Scopes, "openid") {
		add("scopes", "%q has no openid: login sends the ID token, which only openid gets; write scopes: [openid, offline_access, email]", l.Scopes)
	}
	if c.SPIFFE != nil || c.Kubernetes != nil {
		errs = append(errs, errors.New("login: is for issuers of people (discovery: true with an OIDC provider), not for spiffe or kubernetes issuers"))
	}
	if c.Issuer != "" {
		if err := checkURL(c.Issuer, c.InsecureHTTP); err != nil {
			errs = append(errs, fmt.Errorf("login: needs the OIDC discovery document of issuer, an http(s) URL: %v", err))
		}
	}
	return errs
}
