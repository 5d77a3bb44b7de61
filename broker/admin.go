package broker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/credbroker/credbroker/leases"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// adminService implements the AdminService RPCs, for identities an admin
// policy matches.
type adminService struct {
	*credentialService
	server *Server // root rotation and admin secrets
}

var _ credbrokerv1connect.AdminServiceHandler = adminService{}

func (s adminService) admin(ctx context.Context) error {
	if !s.rt().cfg.Policy().IsAdmin(caller(ctx)) {
		return errNotAdmin
	}
	return nil
}

func (s adminService) RevokeLeases(ctx context.Context, req *connect.Request[credbrokerv1.RevokeLeasesRequest]) (*connect.Response[credbrokerv1.RevokeLeasesResponse], error) {
	out, err := s.revokeLeases(ctx, req.Msg)
	return reply(ctx, s.log, "revoke leases", out, err)
}

func (s adminService) revokeLeases(ctx context.Context, m *credbrokerv1.RevokeLeasesRequest) (*credbrokerv1.RevokeLeasesResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	if err := checkCaps(fieldCap{"role", m.GetRole(), maxNameBytes}, fieldCap{"backend", m.GetBackend(), maxNameBytes},
		fieldCap{"subject", m.GetSubject(), maxSubjectBytes}, fieldCap{"reason", m.GetReason(), maxReasonBytes}); err != nil {
		return nil, err
	}
	if m.GetRole() == "" && m.GetBackend() == "" && m.GetSubject() == "" {
		return nil, errRevokeAll
	}
	who := actor(caller(ctx))
	reason := "revoked by admin " + who
	if m.GetReason() != "" {
		reason += ": " + m.GetReason()
	}
	ctx = context.WithoutCancel(ctx) // a half-done mass revoke is finished
	out := &credbrokerv1.RevokeLeasesResponse{}
	for {
		// Each page is revoked before the next is read, so the listing
		// always starts again at the first lease still ACTIVE.
		page, _, err := s.store.List(ctx, leases.ListFilter{
			State: leases.StateActive, Role: m.GetRole(), Backend: m.GetBackend(), Subject: m.GetSubject(), PageSize: 500,
		})
		if err != nil {
			return nil, err
		}
		progress := false
		for _, l := range page {
			got, err := s.reaper.Revoke(ctx, l.ID, reason, who)
			if err != nil {
				return nil, err
			}
			switch got.State {
			case leases.StateRevoked:
				out.Revoked++
				progress = true
			case leases.StateRevoking:
				out.Retrying++
				progress = true
			}
		}
		if len(page) == 0 || !progress {
			break
		}
	}
	s.log.WarnContext(ctx, "leases revoked by admin", slog.String("actor", who), slog.String("role", m.GetRole()),
		slog.String("backend", m.GetBackend()), slog.String("subject", m.GetSubject()),
		slog.Int("revoked", int(out.Revoked)), slog.Int("retrying", int(out.Retrying)))
	return out, nil
}

func (s adminService) ExportLeaseHistory(ctx context.Context, req *connect.Request[credbrokerv1.ExportLeaseHistoryRequest], stream *connect.ServerStream[credbrokerv1.ExportLeaseHistoryResponse]) error {
	return toConnect(ctx, s.log, "export", s.export(ctx, req.Msg, stream.Send))
}

func (s adminService) export(ctx context.Context, m *credbrokerv1.ExportLeaseHistoryRequest, send func(*credbrokerv1.ExportLeaseHistoryResponse) error) error {
	if err := s.admin(ctx); err != nil {
		return err
	}
	if err := checkCaps(fieldCap{"lease_id", m.GetLeaseId(), maxLeaseIDBytes}, fieldCap{"kind", m.GetKind(), maxKindBytes}); err != nil {
		return err
	}
	f := eventFilterFromProto(m)
	if !f.To.IsZero() && f.To.Before(f.From) {
		return errEndBeforeStart
	}
	// Denials counted but not yet written go on the record first, so the
	// export shows every refusal so far.
	if err := s.store.FlushDenials(ctx); err != nil {
		return err
	}
	// The export is itself on the record, before the first event is sent.
	details := map[string]string{"lease_id": f.LeaseID, "kind": f.Kind}
	if !f.From.IsZero() {
		details["start_time"] = f.From.UTC().Format(time.RFC3339Nano)
	}
	if !f.To.IsZero() {
		details["end_time"] = f.To.UTC().Format(time.RFC3339Nano)
	}
	if err := s.store.RecordEvent(ctx, leases.Event{Kind: "exported", Actor: actor(caller(ctx)), Details: details}); err != nil {
		return err
	}
	return s.store.Events(ctx, f, func(e leases.Event) error {
		return send(&credbrokerv1.ExportLeaseHistoryResponse{Event: EventProto(e)})
	})
}

func (s adminService) GetInventory(ctx context.Context, _ *connect.Request[credbrokerv1.GetInventoryRequest]) (*connect.Response[credbrokerv1.GetInventoryResponse], error) {
	out, err := s.inventory(ctx)
	return reply(ctx, s.log, "inventory", out, err)
}

func (s adminService) inventory(ctx context.Context) (*credbrokerv1.GetInventoryResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	counts, err := s.store.ActiveByRole(ctx)
	if err != nil {
		return nil, err
	}
	versions, err := s.store.AdminSecretVersions(ctx)
	if err != nil {
		return nil, err
	}
	rotated := map[string]time.Time{}
	for name, v := range versions {
		rotated[name] = v.RotatedAt
	}
	return inventoryProto(s.rt().cfg.catalog, counts, rotated), nil
}

func (s adminService) RotateRoot(ctx context.Context, req *connect.Request[credbrokerv1.RotateRootRequest]) (*connect.Response[credbrokerv1.RotateRootResponse], error) {
	out, err := s.rotateRoot(ctx, req.Msg)
	return reply(ctx, s.log, "rotate root", out, err)
}

func (s adminService) rotateRoot(ctx context.Context, m *credbrokerv1.RotateRootRequest) (*credbrokerv1.RotateRootResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	if err := checkCaps(fieldCap{"backend", m.GetBackend(), maxNameBytes}); err != nil {
		return nil, err
	}
	if m.GetBackend() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("backend is required: the name of a backend in the config"))
	}
	done, _, err := s.server.rotateRoot(ctx, m.GetBackend(), actor(caller(ctx)), true)
	if err != nil {
		return nil, err
	}
	return &credbrokerv1.RotateRootResponse{Backend: done.Backend, RotatedAt: timestamppb.New(done.RotatedAt), Version: done.Version}, nil
}

func (s adminService) RewrapSecrets(ctx context.Context, _ *connect.Request[credbrokerv1.RewrapSecretsRequest]) (*connect.Response[credbrokerv1.RewrapSecretsResponse], error) {
	out, err := s.rewrap(ctx)
	return reply(ctx, s.log, "rewrap secrets", out, err)
}

func (s adminService) rewrap(ctx context.Context) (*credbrokerv1.RewrapSecretsResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	if !s.store.HasKeyring() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errNoKEK)
	}
	res, err := s.store.Rewrap(context.WithoutCancel(ctx), actor(caller(ctx)))
	if err != nil {
		if errors.Is(err, leases.ErrUnknownKEK) || errors.Is(err, leases.ErrDecrypt) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New(strings.TrimPrefix(err.Error(), "leases: ")))
		}
		return nil, err
	}
	s.log.InfoContext(ctx, "admin secrets rewrapped", slog.String("actor", actor(caller(ctx))), slog.String("kek_id", res.KEKID),
		slog.Int("rewrapped", res.Rewrapped), slog.Int("unchanged", res.Unchanged))
	return &credbrokerv1.RewrapSecretsResponse{KekId: res.KEKID, Rewrapped: int32(res.Rewrapped), Unchanged: int32(res.Unchanged)}, nil
}

// ExportVerifier checks exported events one at a time, in the order
// exported, against the hash chains they belong to and the checkpoints among
// them, keeping only each chain's head and what the next checkpoint must
// find: an export of any length is verified as it streams.
type ExportVerifier struct {
	v *leases.ChainVerifier
	n int
}

// NewExportVerifier returns a verifier for an export. partial says the
// export does not start at the beginning of the history (a time range), so
// each chain's first event is taken on trust.
func NewExportVerifier(partial bool) *ExportVerifier {
	v := leases.NewChainVerifier()
	v.Partial = partial
	return &ExportVerifier{v: v}
}

// Add checks the next exported event; the error names it when it does not
// verify.
func (x *ExportVerifier) Add(pe *credbrokerv1.LeaseEvent) error {
	if err := x.v.Add(eventFromProto(pe)); err != nil {
		return err
	}
	x.n++
	return nil
}

// Verified is how many events verified so far.
func (x *ExportVerifier) Verified() int { return x.n }

// VerifyExport checks exported events with an [ExportVerifier] and returns
// how many verified; the error names the first that does not.
func VerifyExport(events []*credbrokerv1.LeaseEvent, partial bool) (int, error) {
	x := NewExportVerifier(partial)
	for _, pe := range events {
		if err := x.Add(pe); err != nil {
			return x.Verified(), err
		}
	}
	return x.Verified(), nil
}
