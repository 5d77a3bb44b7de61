package broker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/credbroker/credbroker/leases"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// adminService implements the AdminService RPCs, for identities an admin
// policy matches.
type adminService struct {
	*credentialService
}

var _ credbrokerv1connect.AdminServiceHandler = adminService{}

var errNotAdmin = connect.NewError(connect.CodePermissionDenied, errors.New("this call needs an identity an admin policy matches"))

func (s adminService) admin(ctx context.Context) error {
	if !s.rt().cfg.Policy().IsAdmin(caller(ctx)) {
		return errNotAdmin
	}
	return nil
}

func (s adminService) RevokeLeases(ctx context.Context, req *connect.Request[credbrokerv1.RevokeLeasesRequest]) (*connect.Response[credbrokerv1.RevokeLeasesResponse], error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	m := req.Msg
	if err := checkCaps(fieldCap{"role", m.GetRole(), maxNameBytes}, fieldCap{"backend", m.GetBackend(), maxNameBytes},
		fieldCap{"subject", m.GetSubject(), maxSubjectBytes}, fieldCap{"reason", m.GetReason(), maxReasonBytes}); err != nil {
		return nil, err
	}
	if m.GetRole() == "" && m.GetBackend() == "" && m.GetSubject() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("give at least one of role, backend, subject: revoking every lease is not one call"))
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
			return nil, toConnect(ctx, s.log, "revoke leases", err)
		}
		progress := false
		for _, l := range page {
			got, err := s.reaper.Revoke(ctx, l.ID, reason, who)
			if err != nil {
				return nil, toConnect(ctx, s.log, "revoke leases", err)
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
	return connect.NewResponse(out), nil
}

func (s adminService) ExportLeaseHistory(ctx context.Context, req *connect.Request[credbrokerv1.ExportLeaseHistoryRequest], stream *connect.ServerStream[credbrokerv1.ExportLeaseHistoryResponse]) error {
	if err := s.admin(ctx); err != nil {
		return err
	}
	m := req.Msg
	if err := checkCaps(fieldCap{"lease_id", m.GetLeaseId(), maxLeaseIDBytes}, fieldCap{"kind", m.GetKind(), maxKindBytes}); err != nil {
		return err
	}
	f := leases.EventFilter{LeaseID: m.GetLeaseId(), Kind: m.GetKind()}
	if m.StartTime != nil {
		f.From = m.GetStartTime().AsTime()
	}
	if m.EndTime != nil {
		f.To = m.GetEndTime().AsTime()
	}
	if !f.To.IsZero() && f.To.Before(f.From) {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("end_time is before start_time"))
	}
	// Denials counted but not yet written go on the record first, so the
	// export shows every refusal so far.
	if err := s.store.FlushDenials(ctx); err != nil {
		return toConnect(ctx, s.log, "export", err)
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
		return toConnect(ctx, s.log, "export", err)
	}
	err := s.store.Events(ctx, f, func(e leases.Event) error {
		return stream.Send(&credbrokerv1.ExportLeaseHistoryResponse{Event: EventProto(e)})
	})
	if err != nil {
		return toConnect(ctx, s.log, "export", err)
	}
	return nil
}

func (s adminService) GetInventory(ctx context.Context, _ *connect.Request[credbrokerv1.GetInventoryRequest]) (*connect.Response[credbrokerv1.GetInventoryResponse], error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	counts, err := s.store.ActiveByRole(ctx)
	if err != nil {
		return nil, toConnect(ctx, s.log, "inventory", err)
	}
	cfg := s.rt().cfg
	out := &credbrokerv1.GetInventoryResponse{}
	for _, b := range cfg.Backends {
		out.Backends = append(out.Backends, &credbrokerv1.InventoryBackend{
			Name: b.Name, Plugin: b.Plugin, Environment: b.Environment, Owner: b.Owner, Sweep: *b.Sweep,
		})
	}
	for _, r := range cfg.Roles {
		b, _ := cfg.Backend(r.Backend)
		ir := &credbrokerv1.InventoryRole{
			Name: r.Name, Backend: r.Backend, Owner: r.Owner, Environment: b.Environment,
			DefaultTtl: durationpb.New(r.DefaultTTL), MaxTtl: durationpb.New(r.MaxTTL),
			ActiveLeases: counts[r.Name],
		}
		ir.Policies, ir.BreakGlassPolicies = cfg.Policy().RolePolicies(r.Name)
		out.Roles = append(out.Roles, ir)
	}
	return connect.NewResponse(out), nil
}

// EventProto converts a lease event for the API.
func EventProto(e leases.Event) *credbrokerv1.LeaseEvent {
	return &credbrokerv1.LeaseEvent{
		Seq: e.Seq, Chain: int32(e.Chain), LeaseId: e.LeaseID, Kind: e.Kind, Actor: e.Actor,
		At: timestamppb.New(e.At), Details: e.Details, PrevHash: e.PrevHash, Hash: e.Hash,
	}
}

// VerifyExport checks exported events, in the order exported, against the
// hash chains they belong to and the checkpoints among them. partial says
// the export does not start at the beginning of the history (a time range),
// so each chain's first event is taken on trust. It returns how many events
// verified; the error names the first that does not.
func VerifyExport(events []*credbrokerv1.LeaseEvent, partial bool) (int, error) {
	v := leases.NewChainVerifier()
	v.Partial = partial
	for i, pe := range events {
		e := leases.Event{
			Seq: pe.GetSeq(), Chain: int(pe.GetChain()), LeaseID: pe.GetLeaseId(), Kind: pe.GetKind(),
			Actor: pe.GetActor(), At: pe.GetAt().AsTime(), Details: pe.GetDetails(),
			PrevHash: pe.GetPrevHash(), Hash: pe.GetHash(),
		}
		if e.Details == nil {
			e.Details = map[string]string{}
		}
		if err := v.Add(e); err != nil {
			return i, err
		}
	}
	return len(events), nil
}
