package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/credbroker/credbroker/client"
)

// loginTimeout is how long login waits for the person to finish in the
// browser.
const loginTimeout = 5 * time.Minute

func newLoginCmd() *cobra.Command {
	var issuerName string
	var noBrowser, device bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in as a person with the broker's OIDC provider",
		Long: `Log in as a person with the OIDC provider the broker names for people
(GET /v1/login-config), with the authorization code flow and PKCE on a
loopback redirect: the browser opens (or the URL is printed), you log in, and
the ID token and refresh token are cached for this broker in the user's
config directory (0600). Every client command then uses them when no other
token is given, refreshing the ID token when it expires. 'credbroker logout'
removes them.

With --device, for a terminal without a browser, login uses the device
authorization grant (RFC 8628) instead: it prints a URL and a code to enter
there from any device, and waits while you log in and approve.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if device && noBrowser {
				return usageError{errors.New("--device and --no-browser are two ways to log in: pass one (--device needs no browser here at all)")}
			}
			if device {
				return loginDevice(cmd.Context(), cmd.ErrOrStderr(), clientAddr(), issuerName)
			}
			return login(cmd.Context(), cmd.ErrOrStderr(), clientAddr(), issuerName, noBrowser)
		},
	}
	cmd.Flags().StringVar(&issuerName, "issuer", "", "the issuer to log in with, by its name in the broker's config (needed when the broker offers several)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the URL to open instead of opening a browser")
	cmd.Flags().BoolVar(&device, "device", false, "log in with the device authorization grant: enter a printed code at a URL from any device (no browser or loopback port here)")
	return cmd
}

func newLogoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Remove the login cached for this broker",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr := clientAddr()
			had, err := client.RemoveSession(addr)
			if err != nil {
				return err
			}
			if had {
				fmt.Fprintf(cmd.OutOrStdout(), "Logged out of %s.\n", addr)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "No login cached for %s.\n", addr)
			}
			return nil
		},
	}
}

// loginProvider finds the issuer for people the broker at addr publishes
// (the one named issuerName, or its only one) and that issuer's OIDC
// discovery document.
func loginProvider(ctx context.Context, addr, issuerName string) (client.LoginIssuer, *client.OIDCProvider, error) {
	issuers, err := client.FetchLoginIssuers(ctx, addr)
	if err != nil {
		return client.LoginIssuer{}, nil, err
	}
	li, err := pickIssuer(addr, issuers, issuerName)
	if err != nil {
		return client.LoginIssuer{}, nil, err
	}
	provider, err := client.Discover(ctx, li.Issuer)
	if err != nil {
		return client.LoginIssuer{}, nil, fmt.Errorf("issuer %s: %w", li.Name, err)
	}
	return li, provider, nil
}

func login(ctx context.Context, out io.Writer, addr, issuerName string, noBrowser bool) error {
	li, provider, err := loginProvider(ctx, addr, issuerName)
	if err != nil {
		return err
	}

	// RFC 8252 §7.3: a loopback redirect on a port of our own.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the browser's redirect: %w", err)
	}
	defer ln.Close()
	conf := oauth2.Config{
		ClientID: li.ClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL: provider.AuthorizationEndpoint, TokenURL: provider.TokenEndpoint,
			AuthStyle: oauth2.AuthStyleInParams, // a public client: no secret
		},
		RedirectURL: fmt.Sprintf("http://%s/callback", ln.Addr()),
		Scopes:      li.Scopes,
	}
	verifier, state, nonce := oauth2.GenerateVerifier(), rand.Text(), rand.Text()
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce))

	type result struct {
		tok *oauth2.Token
		err error
	}
	done := make(chan result, 1)
	finish := func(w http.ResponseWriter, r result) {
		if r.err != nil {
			http.Error(w, "credbroker login failed: "+r.err.Error()+"\nSee the terminal.", http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "credbroker: you are logged in. You can close this window.")
		}
		// The page reaches the browser before login returns and the
		// server shuts down.
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case done <- r:
		default:
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			http.Error(w, "credbroker login: this redirect is not from the login in progress", http.StatusBadRequest)
			return
		}
		if e := q.Get("error"); e != "" {
			finish(w, result{err: fmt.Errorf("the issuer refused the login: %s: %s", e, q.Get("error_description"))})
			return
		}
		xctx, cancel := context.WithTimeout(context.WithValue(r.Context(), oauth2.HTTPClient, http.DefaultClient), time.Minute)
		defer cancel()
		tok, err := conf.Exchange(xctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			err = fmt.Errorf("exchange the authorization code: %w", err)
		}
		finish(w, result{tok: tok, err: err})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	fmt.Fprintf(out, "Log in to %s with %s (%s) at:\n\n  %s\n\n", addr, li.Name, li.Issuer, authURL)
	if !noBrowser {
		if err := openBrowser(authURL); err != nil {
			fmt.Fprintf(out, "(Could not open a browser: %v. Open the URL above.)\n", err)
		}
	}
	fmt.Fprintln(out, "Waiting for the browser…")

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(loginTimeout):
		return fmt.Errorf("no login within %s", loginTimeout)
	}
	if r.err != nil {
		return r.err
	}
	s := &client.Session{
		IssuerName: li.Name, Issuer: li.Issuer, ClientID: li.ClientID, Scopes: li.Scopes,
		TokenEndpoint: provider.TokenEndpoint,
	}
	if err := s.Update(r.tok); err != nil {
		return err
	}
	claims, err := idClaims(s.IDToken)
	if err != nil {
		return err
	}
	if got, _ := claims["nonce"].(string); subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return errors.New("the ID token does not carry this login's nonce: refusing it")
	}
	return saveLogin(out, addr, s, claims)
}

// saveLogin caches s, the login to the broker at addr whose ID token has
// claims, and says who is logged in until when.
func saveLogin(out io.Writer, addr string, s *client.Session, claims map[string]any) error {
	path, err := s.Save(addr)
	if err != nil {
		return fmt.Errorf("cache the login: %w", err)
	}
	who, _ := claims["sub"].(string)
	for _, k := range []string{"email", "preferred_username"} {
		if v, ok := claims[k].(string); ok && v != "" {
			who = fmt.Sprintf("%s (%s)", v, who)
			break
		}
	}
	fmt.Fprintf(out, "Logged in to %s as %s until %s (refreshed after that", addr, who, s.Expiry.Local().Format(time.DateTime))
	if s.RefreshToken == "" {
		fmt.Fprint(out, ": no refresh token, so log in again then")
	}
	fmt.Fprintf(out, "). Cached in %s.\n", path)
	return nil
}

// pickIssuer chooses the issuer named name, or the only one.
func pickIssuer(addr string, issuers []client.LoginIssuer, name string) (client.LoginIssuer, error) {
	var names []string
	for _, li := range issuers {
		if li.Name == name || name == "" && len(issuers) == 1 {
			return li, nil
		}
		names = append(names, li.Name)
	}
	switch {
	case len(issuers) == 0:
		return client.LoginIssuer{}, fmt.Errorf("the broker at %s offers no issuer for people to log in with (an issuer needs a login: block in its config)", addr)
	case name == "":
		return client.LoginIssuer{}, usageError{fmt.Errorf("the broker at %s offers several issuers: pass --issuer with one of %s", addr, strings.Join(names, ", "))}
	}
	return client.LoginIssuer{}, usageError{fmt.Errorf("the broker at %s offers no issuer %q for login: pass --issuer with one of %s", addr, name, strings.Join(names, ", "))}
}

// idClaims decodes the payload of an ID token the token endpoint just sent
// over TLS (or loopback); the broker verifies its signature.
func idClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("the ID token is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the ID token's payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		return nil, fmt.Errorf("the ID token's payload: %w", err)
	}
	return claims, nil
}

// openBrowser opens url with the desktop's opener.
func openBrowser(url string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, url)
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
