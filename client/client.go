package client

import (
	"context"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// DefaultAddr is where the client looks for the broker when CREDBROKER_ADDR
// is unset.
const DefaultAddr = "http://127.0.0.1:8420"

// Client calls a credbroker server. Its methods are the CredentialService
// RPCs; Admin holds the AdminService RPCs, for admin identities.
type Client struct {
	credbrokerv1connect.CredentialServiceClient
	Admin credbrokerv1connect.AdminServiceClient
}

// New returns a client for the broker at addr that sends a token from tokens
// with every call.
func New(addr string, tokens TokenSource, opts ...connect.ClientOption) *Client {
	opts = append([]connect.ClientOption{connect.WithInterceptors(bearer{tokens})}, opts...)
	addr = strings.TrimRight(addr, "/")
	return &Client{
		CredentialServiceClient: credbrokerv1connect.NewCredentialServiceClient(httpClient, addr, opts...),
		Admin:                   credbrokerv1connect.NewAdminServiceClient(httpClient, addr, opts...),
	}
}

// httpClient keeps enough idle connections for a workload that calls from
// many goroutines (http.DefaultClient keeps two per host).
var httpClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: t}
}()

// TokenFromEnv returns the token source the environment names:
// CREDBROKER_TOKEN, else CREDBROKER_TOKEN_FILE.
func TokenFromEnv() (TokenSource, error) {
	if t := os.Getenv("CREDBROKER_TOKEN"); t != "" {
		return envToken{"CREDBROKER_TOKEN", t}, nil
	}
	if f := os.Getenv("CREDBROKER_TOKEN_FILE"); f != "" {
		return TokenFile(f), nil
	}
	return nil, errNoToken
}

// AddrFromEnv returns CREDBROKER_ADDR, or [DefaultAddr].
func AddrFromEnv() string {
	if a := os.Getenv("CREDBROKER_ADDR"); a != "" {
		return a
	}
	return DefaultAddr
}

// bearer adds "Authorization: Bearer <token>" to every request.
type bearer struct{ tokens TokenSource }

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tok, err := b.tokens.Token(ctx)
		if err != nil {
			return nil, connect.NewError(connect.CodeUnauthenticated, err)
		}
		req.Header().Set("Authorization", "Bearer "+tok)
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if tok, err := b.tokens.Token(ctx); err == nil {
			conn.RequestHeader().Set("Authorization", "Bearer "+tok)
		}
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
