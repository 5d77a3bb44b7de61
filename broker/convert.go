package broker

import (
	"encoding/json"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// This file holds the conversions between the broker's types and the API's:
// handlers decide and call, these only translate.

// requestedTTL reads an optional ttl or increment of a request: 0 when it is
// not set, an error naming field when it is invalid or below minTTL.
func requestedTTL(d *durationpb.Duration, field string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if !d.IsValid() || d.AsDuration() < minTTL {
		return 0, errTTLTooShort(field)
	}
	return d.AsDuration(), nil
}

// roleProto describes a granted role to the identity it is granted to.
func roleProto(cat *catalog, g Grant) *credbrokerv1.Role {
	r := g.Role
	b := cat.backend(r.Backend)
	return &credbrokerv1.Role{
		Name:             r.Name,
		Backend:          r.Backend,
		Plugin:           b.driver.Name(), // the driver's (plugin: external's program's), which connect looks up
		DefaultTtl:       durationpb.New(g.DefaultTTL(false)),
		MaxTtl:           durationpb.New(g.MaxTTL(false)),
		Owner:            r.Owner,
		Environment:      b.Environment,
		BreakGlassOnly:   g.Access == AccessBreakGlass,
		BreakGlassMaxTtl: durationpb.New(g.MaxTTL(true)),
	}
}

func timeProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var stateProto = map[leases.State]credbrokerv1.LeaseState{
	leases.StatePending:  credbrokerv1.LeaseState_LEASE_STATE_PENDING,
	leases.StateActive:   credbrokerv1.LeaseState_LEASE_STATE_ACTIVE,
	leases.StateRevoking: credbrokerv1.LeaseState_LEASE_STATE_REVOKING,
	leases.StateRevoked:  credbrokerv1.LeaseState_LEASE_STATE_REVOKED,
}

func stateFromProto(s credbrokerv1.LeaseState) leases.State {
	for k, v := range stateProto {
		if v == s {
			return k
		}
	}
	return ""
}

func leaseProto(l leases.Lease) *credbrokerv1.Lease {
	return &credbrokerv1.Lease{
		Id:           l.ID,
		Role:         l.Role,
		Backend:      l.Backend,
		Username:     l.Username,
		State:        stateProto[l.State],
		Subject:      l.Subject,
		Issuer:       l.Issuer,
		CreatedAt:    timeProto(l.CreatedAt),
		ExpiresAt:    timeProto(l.ExpiresAt),
		MaxExpiresAt: timeProto(l.MaxExpiresAt),
		Renewable:    l.Renewable,
		RevokedAt:    timeProto(l.RevokedAt),
		RevokeReason: l.RevokeReason,
		BreakGlass:   l.BreakGlass,
		SubjectName:  l.SubjectName,
	}
}

func leasesProto(list []leases.Lease) []*credbrokerv1.Lease {
	var out []*credbrokerv1.Lease
	for _, l := range list {
		out = append(out, leaseProto(l))
	}
	return out
}

// credentialProto is where an issued password leaves the process, once.
func credentialProto(c plugins.Credential) *credbrokerv1.Credential {
	env := make(map[string]string, len(c.Env))
	for k, v := range c.Env {
		env[k] = v.Reveal()
	}
	return &credbrokerv1.Credential{
		Username: c.Username,
		Password: c.Password.Reveal(),
		Uri:      c.URI.Reveal(),
		Env:      env,
		Fields:   c.Fields,
	}
}

// EventProto converts a lease event for the API.
func EventProto(e leases.Event) *credbrokerv1.LeaseEvent {
	return &credbrokerv1.LeaseEvent{
		Seq: e.Seq, Chain: int32(e.Chain), LeaseId: e.LeaseID, Kind: e.Kind, Actor: e.Actor,
		At: timestamppb.New(e.At), Details: e.Details, PrevHash: e.PrevHash, Hash: e.Hash,
	}
}

// eventFromProto is EventProto's inverse, for verifying an export.
func eventFromProto(pe *credbrokerv1.LeaseEvent) leases.Event {
	e := leases.Event{
		Seq: pe.GetSeq(), Chain: int(pe.GetChain()), LeaseID: pe.GetLeaseId(), Kind: pe.GetKind(),
		Actor: pe.GetActor(), At: pe.GetAt().AsTime(), Details: pe.GetDetails(),
		PrevHash: pe.GetPrevHash(), Hash: pe.GetHash(),
	}
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	return e
}

// eventFilterFromProto reads the selection of a history export.
func eventFilterFromProto(m *credbrokerv1.ExportLeaseHistoryRequest) leases.EventFilter {
	f := leases.EventFilter{LeaseID: m.GetLeaseId(), Kind: m.GetKind()}
	if m.StartTime != nil {
		f.From = m.GetStartTime().AsTime()
	}
	if m.EndTime != nil {
		f.To = m.GetEndTime().AsTime()
	}
	return f
}

// inventoryProto describes the configured backends and roles to an admin,
// with each role's ACTIVE leases from counts.
func inventoryProto(cat *catalog, counts map[string]int64, rotated map[string]time.Time) *credbrokerv1.GetInventoryResponse {
	out := &credbrokerv1.GetInventoryResponse{}
	for _, b := range cat.cfg.Backends {
		ib := &credbrokerv1.InventoryBackend{
			Name: b.Name, Plugin: b.Plugin, Environment: b.Environment, Owner: b.Owner, Sweep: *b.Sweep,
		}
		if at := rotated[b.Name]; !at.IsZero() {
			ib.LastRootRotation = timestamppb.New(at)
		}
		if b.Rotate != nil {
			ib.RootRotationPeriod = durationpb.New(b.Rotate.Period)
		}
		out.Backends = append(out.Backends, ib)
	}
	for _, r := range cat.cfg.Roles {
		ir := &credbrokerv1.InventoryRole{
			Name: r.Name, Backend: r.Backend, Owner: r.Owner, Environment: cat.backend(r.Backend).Environment,
			DefaultTtl: durationpb.New(r.DefaultTTL), MaxTtl: durationpb.New(r.MaxTTL),
			ActiveLeases: counts[r.Name],
		}
		ir.Policies, ir.BreakGlassPolicies = cat.cfg.Policy().RolePolicies(r.Name)
		out.Roles = append(out.Roles, ir)
	}
	return out
}

// whoAmIProto says how the broker sees id under policy p: only the claims
// the policies of id's issuer look at, never the token or its other claims.
func whoAmIProto(p *Policy, id authn.Identity) *credbrokerv1.WhoAmIResponse {
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
	return out
}
