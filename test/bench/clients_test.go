package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
	"github.com/credbroker/credbroker/test/harness"
)

// The broker is called with two clients that differ only in the codec, on
// one HTTP/1.1 transport: the Connect protocol with binary protobuf
// (connect-go's default, what client.New and so the CLI and agent send) and
// the Connect protocol with JSON (connect.WithProtoJSON(), what curl or a
// script sends). Their measurements are the sides sideProto and sideJSON.
const (
	sideProto = "broker"      // through the Connect-proto client
	sideJSON  = "broker-json" // through the Connect-JSON client
)

// sideLabel is how a side is shown in the report.
func sideLabel(side string) string {
	switch side {
	case sideProto:
		return "broker (proto)"
	case sideJSON:
		return "broker (JSON)"
	}
	return side
}

// benchHTTP is the HTTP client of every broker client: a clone of Go's
// default transport that keeps -cb.client-idle-conns idle connections per
// host (Go's default of 2 would make 6 of 8 workers reconnect on every call).
var benchHTTP = sync.OnceValue(func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = idleConns()
	return &http.Client{Transport: t}
})

// idleConns is the idle connections per host the clients keep.
func idleConns() int {
	if *flagClientIdle > 0 {
		return *flagClientIdle
	}
	return goDefaultIdle
}

// brokerClient calls one broker with one codec.
type brokerClient struct {
	cli credbrokerv1connect.CredentialServiceClient
}

// brokerClients returns the proto and the JSON client of br, sending token.
// Every credential either receives is tracked by the harness, whose
// end-of-test check makes sure none reached the broker's logs.
func brokerClients(br *harness.Broker, token string) (proto, json brokerClient) {
	return brokerClient{br.ConnectClient(token, benchHTTP())},
		brokerClient{br.ConnectClient(token, benchHTTP(), connect.WithProtoJSON())}
}

// volumeClient is a Connect-proto client of br for the sections that issue
// tens of thousands of credentials: it tracks one credential in
// trackEvery for the harness's secret check, which otherwise searches the
// broker's whole log for every one of them (minutes at that volume).
func volumeClient(br *harness.Broker, token string) brokerClient {
	return brokerClient{credbrokerv1connect.NewCredentialServiceClient(benchHTTP(), br.Addr,
		connect.WithInterceptors(bearerToken(token), &sampledTracker{br: br}))}
}

// trackEvery is how many issued credentials volumeClient sees per one it
// tracks.
const trackEvery = 100

// bearerToken sets "Authorization: Bearer <token>" on unary calls.
func bearerToken(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// sampledTracker tracks the password and URI of every trackEvery-th issued
// credential.
type sampledTracker struct {
	br *harness.Broker
	n  atomic.Int64
}

func (s *sampledTracker) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		if err == nil {
			if m, ok := resp.Any().(*credbrokerv1.IssueCredentialResponse); ok && s.n.Add(1)%trackEvery == 1 {
				s.br.Track(m.GetCredential().GetPassword(), m.GetCredential().GetUri())
			}
		}
		return resp, err
	}
}

func (s *sampledTracker) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (s *sampledTracker) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// issue asks for a credential of role; ttl 0 takes the role's default.
func (c brokerClient) issue(ctx context.Context, role string, ttl time.Duration) (leaseRef, error) {
	req := &credbrokerv1.IssueCredentialRequest{Role: role}
	if ttl != 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := c.cli.IssueCredential(ctx, connect.NewRequest(req))
	if err != nil {
		return leaseRef{}, err
	}
	return leaseRef{id: resp.Msg.GetLease().GetId(), username: resp.Msg.GetLease().GetUsername()}, nil
}

func (c brokerClient) renew(ctx context.Context, l leaseRef) error {
	_, err := c.cli.RenewLease(ctx, connect.NewRequest(&credbrokerv1.RenewLeaseRequest{
		LeaseId: l.id, Increment: durationpb.New(roleTTL),
	}))
	return err
}

func (c brokerClient) revoke(ctx context.Context, l leaseRef) error {
	resp, err := c.cli.RevokeLease(ctx, connect.NewRequest(&credbrokerv1.RevokeLeaseRequest{LeaseId: l.id}))
	if err != nil {
		return err
	}
	if st := resp.Msg.GetLease().GetState(); st != credbrokerv1.LeaseState_LEASE_STATE_REVOKED {
		return fmt.Errorf("lease %s is %s after revoke: %s", l.id, st, resp.Msg.GetLease().GetRevokeReason())
	}
	return nil
}

// side is issue (with the role's default TTL), renew and revoke of role.
func (c brokerClient) side(role string) sideOps {
	return sideOps{
		issue:  func(ctx context.Context) (leaseRef, error) { return c.issue(ctx, role, 0) },
		renew:  c.renew,
		revoke: c.revoke,
	}
}
