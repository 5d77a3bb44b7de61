package broker

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/authn"
)

type identityKey struct{}

// IdentityFrom returns the verified caller of a request.
func IdentityFrom(ctx context.Context) (authn.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(authn.Identity)
	return id, ok
}

// tokenVerifier is the part of authn.Verifier the broker needs.
type tokenVerifier interface {
	Verify(ctx context.Context, token string) (authn.Identity, error)
}

// authInterceptor verifies the bearer token of every call before a handler
// runs and puts the Identity in the context.
type authInterceptor struct {
	verifier func() tokenVerifier // the current one: a reload replaces it
}

func (a *authInterceptor) authenticate(ctx context.Context, header string) (context.Context, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, connect.NewError(connect.CodeUnauthenticated,
			errors.New("missing identity token: send Authorization: Bearer <token>"))
	}
	id, err := a.verifier().Verify(ctx, strings.TrimSpace(token))
	if err != nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, err)
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.authenticate(ctx, req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authenticate(ctx, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

var _ connect.Interceptor = (*authInterceptor)(nil)
