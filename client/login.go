package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/oauth2"
)

// LoginIssuer is an issuer people log in with, as the broker publishes it at
// GET /v1/login-config.
type LoginIssuer struct {
	Name     string   `json:"name"`
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// FetchLoginIssuers returns the issuers the broker at addr offers for login.
func FetchLoginIssuers(ctx context.Context, addr string) ([]LoginIssuer, error) {
	var doc struct {
		Issuers []LoginIssuer `json:"issuers"`
	}
	if err := getJSON(ctx, strings.TrimRight(addr, "/")+"/v1/login-config", &doc); err != nil {
		return nil, fmt.Errorf("read the broker's login config: %w", err)
	}
	return doc.Issuers, nil
}

// OIDCProvider is what login needs of an issuer's OIDC discovery document.
type OIDCProvider struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	// DeviceAuthorizationEndpoint is RFC 8628's; empty when the provider
	// has no device authorization grant.
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
}

// Discover reads <issuer>/.well-known/openid-configuration and checks that
// it names issuer and both endpoints.
func Discover(ctx context.Context, issuer string) (*OIDCProvider, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	var p OIDCProvider
	if err := getJSON(ctx, u, &p); err != nil {
		return nil, fmt.Errorf("OIDC discovery: %w", err)
	}
	switch {
	case p.Issuer != issuer:
		return nil, fmt.Errorf("OIDC discovery: %s names issuer %q, not %q", u, p.Issuer, issuer)
	case p.AuthorizationEndpoint == "" || p.TokenEndpoint == "":
		return nil, fmt.Errorf("OIDC discovery: %s has no authorization_endpoint or token_endpoint", u)
	}
	return &p, nil
}

func getJSON(ctx context.Context, url string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, res.StatusCode)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// Session is a person's login to one broker, cached by `credbroker login`
// in the user's config directory: the ID token the CLI sends, and what it
// needs to refresh it.
type Session struct {
	// IssuerName is the issuer's name in the broker's config.
	IssuerName string `json:"issuer_name"`
	// Issuer is its URL.
	Issuer        string   `json:"issuer"`
	ClientID      string   `json:"client_id"`
	Scopes        []string `json:"scopes"`
	TokenEndpoint string   `json:"token_endpoint"`
	IDToken       string   `json:"id_token"`
	RefreshToken  string   `json:"refresh_token,omitempty"`
	// Expiry is the ID token's exp.
	Expiry time.Time `json:"expiry"`
}

// SessionPath is the file of the login to the broker at addr:
// <user config dir>/credbroker/sessions/<addr, made a file name>.json.
func SessionPath(addr string) (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config directory for the login cache: %w", err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, strings.TrimRight(addr, "/"))
	return filepath.Join(dir, "credbroker", "sessions", name+".json"), nil
}

// LoadSession reads the login to the broker at addr; an error satisfying
// errors.Is(err, fs.ErrNotExist) means there is none.
func LoadSession(addr string) (*Session, string, error) {
	path, err := SessionPath(addr)
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, path, err
	}
	var s Session
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, path, fmt.Errorf("login cache %s is damaged (run credbroker logout, then login): %w", path, err)
	}
	return &s, path, nil
}

// Save writes the session for addr: the directories 0700, the file 0600,
// replaced atomically.
func (s *Session) Save(addr string) (string, error) {
	path, err := SessionPath(addr)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o700); err != nil {
			return "", err
		}
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".session-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

// RemoveSession deletes the login to the broker at addr. It reports whether
// there was one.
func RemoveSession(addr string) (bool, error) {
	path, err := SessionPath(addr)
	if err != nil {
		return false, err
	}
	_ = os.Remove(path + ".lock") // the refresh lock, if a refresh made one
	err = os.Remove(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// TokenExpiry returns the exp claim of a JWT, read without verifying it
// (the broker verifies; this only decides when to refresh).
func TokenExpiry(token string) (time.Time, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, fmt.Errorf("JWT payload: %w", err)
	}
	var claims struct {
		Exp float64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
		return time.Time{}, errors.New("JWT has no exp claim")
	}
	return time.Unix(int64(claims.Exp), 0), nil
}

// refreshMargin is how long before its expiry a cached ID token is
// refreshed, so that it does not expire on the way.
const refreshMargin = 30 * time.Second

// SessionToken is the token source of a person's cached login to the broker
// at Addr: the ID token, refreshed with the refresh token (and the cache
// rewritten) when it is about to expire.
type SessionToken struct {
	Addr string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Token returns the cached ID token, refreshed if need be.
func (st SessionToken) Token(ctx context.Context) (string, error) {
	s, path, err := LoadSession(st.Addr)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errNoToken
		}
		return "", err
	}
	now := time.Now
	if st.Now != nil {
		now = st.Now
	}
	source := "the login cache " + path
	if now().Add(refreshMargin).Before(s.Expiry) {
		return CheckToken(source, s.IDToken)
	}
	// Providers rotate refresh tokens and revoke the whole chain when one is
	// used twice, so two commands refreshing at once would end the login:
	// one refreshes at a time, and the others take what it saved.
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return "", fmt.Errorf("lock the login cache: %w", err)
	}
	defer unlock()
	if s, _, err = LoadSession(st.Addr); err != nil {
		return "", err
	}
	if now().Add(refreshMargin).Before(s.Expiry) {
		return CheckToken(source, s.IDToken)
	}
	if s.RefreshToken == "" {
		return "", fmt.Errorf("your login to %s via %s expired at %s: run credbroker login", st.Addr, s.IssuerName, s.Expiry.Format(time.RFC3339))
	}
	conf := oauth2.Config{
		ClientID: s.ClientID,
		Endpoint: oauth2.Endpoint{TokenURL: s.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   s.Scopes,
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, httpClient)
	tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: s.RefreshToken, Expiry: now().Add(-time.Minute)}).Token()
	if err != nil {
		return "", fmt.Errorf("refresh your login to %s via %s (run credbroker login): %w", st.Addr, s.IssuerName, err)
	}
	if err := s.Update(tok); err != nil {
		return "", fmt.Errorf("refresh your login to %s via %s (run credbroker login): %w", st.Addr, s.IssuerName, err)
	}
	if _, err := s.Save(st.Addr); err != nil {
		return "", fmt.Errorf("save the refreshed login: %w", err)
	}
	return CheckToken(source, s.IDToken)
}

// Update takes the ID token (and the new refresh token, if any) of tok, a
// token response.
func (s *Session) Update(tok *oauth2.Token) error {
	id, _ := tok.Extra("id_token").(string)
	if id == "" {
		return errors.New("the token response has no id_token: is openid among the scopes?")
	}
	exp, err := TokenExpiry(id)
	if err != nil {
		return fmt.Errorf("the ID token: %w", err)
	}
	s.IDToken, s.Expiry = id, exp
	if tok.RefreshToken != "" {
		s.RefreshToken = tok.RefreshToken
	}
	return nil
}

// lockFile takes an exclusive advisory lock on path (made 0600 if missing),
// waiting for another process that holds it, and returns its release.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
