package broker

import (
	"context"

	"connectrpc.com/connect"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// WhoAmI answers from the same decisions IssueCredential makes. It returns
// only the claims the policies of the caller's issuer look at, never the
// token or its other claims.
func (s *credentialService) WhoAmI(ctx context.Context, _ *connect.Request[credbrokerv1.WhoAmIRequest]) (*connect.Response[credbrokerv1.WhoAmIResponse], error) {
	return reply(ctx, s.log, "whoami", whoAmIProto(s.rt().cfg.Policy(), caller(ctx)), nil)
}
