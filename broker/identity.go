package broker

import (
	"context"
	"crypto/sha256"
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
// runs, refuses over-long subjects, rate-limits the identity (before policy
// and before anything is written) and puts the Identity in the context.
type authInterceptor struct {
	verifier func() tokenVerifier // the current one: a reload replaces it
	// svc holds the per-identity request limiter and the metrics; nil
	// limits nothing.
	svc *credentialService
}

func (a *authInterceptor) authenticate(ctx context.Context, procedure, header string) (context.Context, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, errMissingToken
	}
	token = strings.TrimSpace(token)
	// A token refused a moment ago for its identity's rate is refused
	// again, cheaply, while the bucket is still empty.
	var sum [sha256.Size]byte
	if a.svc != nil {
		sum = sha256.Sum256([]byte(token))
		if key, ok := a.svc.refused.get(sum); ok && a.svc.requests.exhausted(key) {
			a.svc.metrics.limited.WithLabelValues(procedure).Inc()
			return nil, a.svc.errSlowDown
		}
	}
	id, err := a.verifier().Verify(ctx, token)
	if err != nil {
		return nil, errUnauthenticated(err)
	}
	// The subject keys the rate limiter and reaches events and logs: cap
	// it first.
	if err := checkCaps(fieldCap{"subject", id.Subject, maxSubjectBytes}, fieldCap{"issuer", id.Issuer, maxIssuerBytes}); err != nil {
		return nil, err
	}
	if a.svc != nil && !a.svc.requests.allow(actor(id)) {
		a.svc.refused.put(sum, actor(id))
		a.svc.metrics.limited.WithLabelValues(procedure).Inc()
		return nil, a.svc.errSlowDown
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.authenticate(ctx, req.Spec().Procedure, req.Header().Get("Authorization"))
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
		ctx, err := a.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

var _ connect.Interceptor = (*authInterceptor)(nil)
