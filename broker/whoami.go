package broker

import (
	"context"
	"encoding/json"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// WhoAmI answers from the same decisions IssueCredential makes. It returns
// only the claims the policies of the caller's issuer look at, never the
// token or its other claims.
func (s *credentialService) WhoAmI(ctx context.Context, _ *connect.Request[credbrokerv1.WhoAmIRequest]) (*connect.Response[credbrokerv1.WhoAmIResponse], error) {
	id := caller(ctx)
	p := s.rt().cfg.Policy()
	out := &credbrokerv1.WhoAmIResponse{
		Issuer:    id.Issuer,
		IssuerUrl: id.IssuerURL,
		Subject:   id.Subject,
		Claims:    map[string]string{},
		Policies:  p.Matched(id),
		Admin:     p.IsAdmin(id),
	}
	if !id.ExpiresAt.IsZero() {
		out.ExpiresAt = timestamppb.New(id.ExpiresAt)
	}
	for _, name := range p.ClaimsConsidered(id.Issuer) {
		v := claimAt(id.Claims, name)
		if v == nil {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			continue // decoded from JSON, so it encodes; skip rather than fail
		}
		out.Claims[name] = string(b)
	}
	for _, g := range p.Grants(id) {
		if g.Access == AccessNormal {
			out.Roles = append(out.Roles, g.Role.Name)
		} else {
			out.BreakGlassRoles = append(out.BreakGlassRoles, g.Role.Name)
		}
	}
	return connect.NewResponse(out), nil
}
