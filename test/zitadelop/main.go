// Command zitadelop serves the example OpenID Provider of
// github.com/zitadel/oidc/v3 (example/server: package exampleop and its
// in-memory storage, users test-user2 / verysecure among them) for the
// device authorization tests of credbroker login --device. It is its own
// module so that the provider's dependencies stay out of credbroker's
// go.mod; test/harness builds it into .bin/zitadel-op-<version>.
//
// It adds to the example a public client (no secret) that may use the
// device authorization grant and refresh tokens, and, with -device-lifetime,
// a shorter life for the device codes it stores (so that a test can see
// the provider answer expired_token without waiting the example's five
// minutes), and makes the subject of a device login the user's ID, not
// the username the example's device page passes (which its token endpoint
// cannot find), and records the client of a device login's refresh token
// (the example records none, so the token cannot be used).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	clientID := flag.String("client-id", "credbroker-cli", "the public device client's id")
	lifetime := flag.Duration("device-lifetime", 0, "how long a device code lives (0: the example's 5m)")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	issuer := fmt.Sprintf("http://%s/", ln.Addr())
	storage.RegisterClients(storage.NativeClient(*clientID))
	users := storage.NewUserStore(issuer)
	s := &store{Storage: storage.NewStorage(users), users: users, clientID: *clientID, lifetime: *lifetime}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	router := exampleop.SetupServer(issuer, s, logger, false)
	// The harness reads the issuer from the first line.
	fmt.Printf("issuer %s\n", issuer)
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// store is the example's storage with the public device client.
type store struct {
	*storage.Storage
	users    storage.UserStore
	clientID string
	lifetime time.Duration
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil || id != s.clientID {
		return c, err
	}
	return deviceClient{c}, nil
}

func (s *store) StoreDeviceAuthorization(ctx context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	if s.lifetime > 0 {
		expires = time.Now().Add(s.lifetime)
	}
	return s.Storage.StoreDeviceAuthorization(ctx, clientID, deviceCode, userCode, expires, scopes)
}

// CompleteDeviceAuthorization makes the user's ID the subject: the
// example's device page passes the username, which its token endpoint then
// cannot find ("user not found").
func (s *store) CompleteDeviceAuthorization(ctx context.Context, userCode, username string) error {
	u := s.users.GetUserByUsername(username)
	if u == nil {
		return fmt.Errorf("no user %q", username)
	}
	return s.Storage.CompleteDeviceAuthorization(ctx, userCode, u.ID)
}

// CreateAccessAndRefreshTokens gives the tokens of a device login the
// client's id: the example's storage knows only its code and refresh
// requests, so it records "" as the client of a device login's refresh
// token, which then cannot be used (invalid_grant).
func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	if d, ok := req.(*op.DeviceAuthorizationState); ok {
		req = storage.RefreshTokenRequestFromBusiness(&storage.RefreshToken{
			ApplicationID: d.ClientID, UserID: d.Subject, Audience: d.GetAudience(),
			Scopes: d.Scopes, AuthTime: d.AuthTime, AMR: d.AMR,
		})
	}
	return s.Storage.CreateAccessAndRefreshTokens(ctx, req, currentRefreshToken)
}

// deviceClient is the example's native (public, PKCE) client that may also
// use the device authorization grant.
type deviceClient struct{ op.Client }

func (c deviceClient) GrantTypes() []oidc.GrantType {
	return append(c.Client.GrantTypes(), oidc.GrantTypeDeviceCode)
}
