package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"golang.org/x/oauth2"

	"github.com/credbroker/credbroker/client"
)

// loginDevice logs in to the broker at addr with the device authorization
// grant (RFC 8628): the person enters the printed user code at the
// verification URI on any device, while this polls the token endpoint at the
// interval the provider asks for (slowing down when told to) until the code
// expires, the person approves or denies, or ctx (ctrl-C) ends.
func loginDevice(ctx context.Context, out io.Writer, addr, issuerName string) error {
	li, provider, err := loginProvider(ctx, addr, issuerName)
	if err != nil {
		return err
	}
	if provider.DeviceAuthorizationEndpoint == "" {
		return fmt.Errorf("issuer %s (%s) has no device_authorization_endpoint in its OIDC discovery document, so it cannot do the device authorization grant: log in without --device", li.Name, li.Issuer)
	}
	conf := oauth2.Config{
		ClientID: li.ClientID,
		Endpoint: oauth2.Endpoint{
			DeviceAuthURL: provider.DeviceAuthorizationEndpoint, TokenURL: provider.TokenEndpoint,
			AuthStyle: oauth2.AuthStyleInParams, // a public client: no secret
		},
		Scopes: li.Scopes,
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, http.DefaultClient)
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return fmt.Errorf("issuer %s: ask for a device code: %w", li.Name, deviceError(err))
	}
	fmt.Fprintf(out, "Log in to %s with %s (%s): on any device, open\n\n  %s\n\nand enter the code\n\n  %s\n\n", addr, li.Name, li.Issuer, da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(or open %s, which carries the code)\n\n", da.VerificationURIComplete)
	}
	if da.Expiry.IsZero() {
		da.Expiry = time.Now().Add(loginTimeout)
	}
	fmt.Fprintf(out, "Waiting until %s…\n", da.Expiry.Local().Format(time.TimeOnly))
	// DeviceAccessToken polls at da.Interval (5s when the provider names
	// none), adds 5s on slow_down, and stops at da.Expiry.
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		switch {
		case errors.Is(err, context.Canceled):
			return errors.New("login cancelled")
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("the code %s expired at %s before the login was approved: run credbroker login --device again", da.UserCode, da.Expiry.Local().Format(time.TimeOnly))
		}
		return fmt.Errorf("issuer %s: %w", li.Name, deviceError(err))
	}
	s := &client.Session{
		IssuerName: li.Name, Issuer: li.Issuer, ClientID: li.ClientID, Scopes: li.Scopes,
		TokenEndpoint: provider.TokenEndpoint,
	}
	if err := s.Update(tok); err != nil {
		return err
	}
	claims, err := idClaims(s.IDToken)
	if err != nil {
		return err
	}
	// No nonce in this grant; the broker verifies the signature, and these
	// two say the token is for this client from this issuer.
	if err := checkIDTokenFor(claims, li.Issuer, li.ClientID); err != nil {
		return err
	}
	return saveLogin(out, addr, s, claims)
}

// checkIDTokenFor checks that an ID token's claims name issuer as iss and
// clientID among aud (a string or an array).
func checkIDTokenFor(claims map[string]any, issuer, clientID string) error {
	if iss, _ := claims["iss"].(string); iss != issuer {
		return fmt.Errorf("the ID token is from issuer %q, not %q: refusing it", iss, issuer)
	}
	var aud []string
	switch a := claims["aud"].(type) {
	case string:
		aud = []string{a}
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok {
				aud = append(aud, s)
			}
		}
	}
	if !slices.Contains(aud, clientID) {
		return fmt.Errorf("the ID token's audience %v does not include the client %q: refusing it", aud, clientID)
	}
	return nil
}

// deviceError says what the provider's RFC 8628 error codes mean.
func deviceError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	what := map[string]string{
		"access_denied":          "the login was denied at the provider",
		"expired_token":          "the device code expired before the login was approved: run credbroker login --device again",
		"unauthorized_client":    "the provider does not let this client use the device authorization grant (allow the grant type urn:ietf:params:oauth:grant-type:device_code for it)",
		"invalid_client":         "the provider does not know this client id",
		"invalid_scope":          "the provider refused the scopes",
		"authorization_pending":  "the login was not approved in time",
		"slow_down":              "the provider asked to slow down",
		"unsupported_grant_type": "the provider does not support the device authorization grant at its token endpoint",
	}[re.ErrorCode]
	if what == "" {
		return err
	}
	if re.ErrorDescription != "" {
		return fmt.Errorf("%s (%s: %s)", what, re.ErrorCode, re.ErrorDescription)
	}
	return fmt.Errorf("%s (%s)", what, re.ErrorCode)
}
