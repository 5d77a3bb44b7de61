package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// minTTL is the shortest lease a caller may ask for.
const minTTL = time.Second

// pluginTimeout bounds every backend call made while serving a request.
const pluginTimeout = 30 * time.Second

// credentialService implements the CredentialService RPCs.
type credentialService struct {
	rt     func() *runtime // the current config and backends
	store  *leases.Store
	reaper *leases.Reaper
	limits *limiter // issue_rate, per identity
	// requests is request_rate, per identity, for every call; the auth
	// interceptor checks it and answers errSlowDown.
	requests    *limiter
	errSlowDown error
	refused     refusedTokens // tokens of identities over request_rate
	renewing    keyedLock     // one renewal of a lease at a time
	metrics     *metrics
	log         *slog.Logger
	now         func() time.Time
}

var _ credbrokerv1connect.CredentialServiceHandler = (*credentialService)(nil)

func caller(ctx context.Context) authn.Identity {
	id, _ := IdentityFrom(ctx) // the auth interceptor guarantees one
	return id
}

// actor names an identity in lease events.
func actor(id authn.Identity) string { return id.Issuer + ":" + id.Subject }

func (s *credentialService) IssueCredential(ctx context.Context, req *connect.Request[credbrokerv1.IssueCredentialRequest]) (*connect.Response[credbrokerv1.IssueCredentialResponse], error) {
	start := time.Now()
	id := caller(ctx)
	msg := req.Msg
	reason := msg.GetBreakGlassReason()
	if err := checkCaps(fieldCap{"role", msg.GetRole(), maxNameBytes}, fieldCap{"break_glass_reason", reason, maxReasonBytes}); err != nil {
		return nil, err
	}
	rt := s.rt()
	breakGlass := reason != ""
	// A role that does not exist and one the caller may not have get the
	// same answer, so the error does not tell which roles exist.
	grant := rt.cfg.Policy().Decide(id, msg.GetRole())
	role := grant.Role
	var deny error
	switch {
	case grant.Allowed(breakGlass):
	case grant.Access == AccessBreakGlass:
		deny = fmt.Errorf("role %q is break-glass only for %s: give a break_glass_reason (credbroker creds %s --break-glass \"why\"); it is recorded, and the lease ends within %s",
			role.Name, id.Subject, role.Name, grant.MaxTTL(true))
	default:
		deny = fmt.Errorf("role %q does not exist or is not granted to you: `credbroker roles` lists the roles you may request, `credbroker whoami` how the broker sees your token", msg.GetRole())
	}
	if deny != nil {
		label, counted := "", "(unknown)"
		if role != nil {
			// A configured name: bounded metric labels. A role that does not
			// exist is counted as "(unknown)", which no role can be named, so
			// a new name each time cannot make a new history row each time.
			label, counted = role.Name, role.Name
		}
		s.metrics.issued.WithLabelValues(label, "denied").Inc()
		s.log.DebugContext(ctx, "issue denied", slog.String("role", msg.GetRole()), slog.String("issuer", id.Issuer), slog.String("subject", id.Subject))
		// Counted, not written: one `denied` event per identity, role and
		// minute is appended later, off the request path.
		s.store.CountDenial(actor(id), counted)
		return nil, connect.NewError(connect.CodePermissionDenied, deny)
	}
	if !s.limits.allow(actor(id)) {
		return nil, connect.NewError(connect.CodeResourceExhausted, errors.New("too many credentials issued to this identity: slow down and reuse (renew) the ones you have"))
	}
	// A break-glass lease is capped by the time limit of emergency access.
	maxTTL := grant.MaxTTL(breakGlass)
	ttl, clamped, err := leaseTTL(role, maxTTL, msg.GetTtl(), "ttl")
	if err != nil {
		return nil, err
	}
	backend, _ := rt.cfg.Backend(role.Backend)
	plugin := rt.plugins[backend.Name]

	now := s.now()
	lease, err := s.store.CreatePending(ctx, leases.Lease{
		ID:           leases.NewID(),
		Role:         role.Name,
		Backend:      backend.Name,
		Plugin:       backend.Plugin,
		Username:     plugins.NewUsername(role.Name, backend.driver.UsernameLimit()),
		Subject:      id.Subject,
		SubjectName:  subjectName(id.Claims),
		Issuer:       id.Issuer,
		BreakGlass:   breakGlass,
		Renewable:    grant.Renewable(),
		ExpiresAt:    now.Add(ttl),
		MaxExpiresAt: now.Add(maxTTL),
	})
	if err != nil {
		return nil, toConnect(ctx, s.log, "issue", err)
	}

	// From here the lease exists: finish it even if the caller goes away, so
	// it ends ACTIVE or handed to the reaper, never in between.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), pluginTimeout)
	defer cancel()
	created, err := plugin.Create(work, plugins.CreateRequest{
		Username:  lease.Username,
		Password:  plugins.NewPassword(),
		ExpiresAt: lease.ExpiresAt,
		Role:      role.Name,
		Spec:      role.spec,
	})
	if err != nil {
		// The plugin's decorator (plugins.Open) has redacted the password.
		s.metrics.issued.WithLabelValues(role.Name, "backend_error").Inc()
		s.log.ErrorContext(ctx, "backend create failed; the reaper will clean up", slog.String("lease_id", lease.ID), slog.String("backend", backend.Name), slog.String("error", err.Error()))
		if ferr := s.store.Fail(work, lease.ID, actor(id), err.Error()); ferr != nil {
			s.log.ErrorContext(ctx, "could not mark failed issue for the reaper; the pending grace will catch it", slog.String("lease_id", lease.ID), slog.String("error", plugins.SanitizeString(ferr.Error())))
		}
		if plugins.IsUnavailable(err) {
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("backend %s could not be reached to create the user; nothing was issued: retry shortly", backend.Name))
		}
		// The backend refused: retrying will not help until the role or the
		// backend is fixed. The (sanitized) reason helps whoever fixes it.
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("backend %s refused to create the user; nothing was issued: %v", backend.Name, err))
	}
	details := map[string]string{"role": role.Name, "ttl": ttl.String()}
	if breakGlass {
		details["break_glass_reason"] = reason
	}
	lease, err = s.store.Activate(work, lease.ID, actor(id), created.State, details)
	if err != nil {
		// The reaper owns the lease now (or will after the grace) and will
		// delete the user; the caller gets nothing half-made.
		return nil, toConnect(ctx, s.log, "issue", err)
	}
	if lease.BreakGlass {
		s.log.WarnContext(ctx, "break-glass credential issued", slog.String("lease_id", lease.ID), slog.String("role", role.Name), slog.String("subject", id.Subject), slog.String("reason", reason), slog.Time("max_expires_at", lease.MaxExpiresAt))
		if err := s.store.RecordEvent(work, leases.Event{LeaseID: lease.ID, Kind: "break_glass", Actor: actor(id), Details: details}); err != nil {
			s.log.ErrorContext(ctx, "record break-glass event", slog.String("error", plugins.SanitizeString(err.Error())))
		}
	}
	s.metrics.issued.WithLabelValues(role.Name, "ok").Inc()
	s.metrics.issueSeconds.WithLabelValues(backend.Name).Observe(time.Since(start).Seconds())
	s.log.InfoContext(ctx, "credential issued", slog.String("lease_id", lease.ID), slog.String("role", role.Name), slog.String("username", lease.Username), slog.String("subject", id.Subject), slog.Time("expires_at", lease.ExpiresAt))
	return connect.NewResponse(&credbrokerv1.IssueCredentialResponse{
		Lease:      leaseProto(lease),
		Credential: credentialProto(created.Credential),
		TtlClamped: clamped,
	}), nil
}

// leaseTTL returns the TTL to use for a request: the role's default when the
// request has none, clamped to maxTTL.
func leaseTTL(role *RoleConfig, maxTTL time.Duration, d *durationpb.Duration, field string) (time.Duration, bool, error) {
	ttl := min(role.DefaultTTL, maxTTL)
	if d != nil {
		if !d.IsValid() || d.AsDuration() < minTTL {
			return 0, false, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s must be at least %s", field, minTTL))
		}
		ttl = d.AsDuration()
	}
	if ttl > maxTTL {
		return maxTTL, true, nil
	}
	return ttl, false, nil
}

// ownLease fetches a lease the caller holds (or any lease for an admin).
// Someone else's lease is reported exactly like a missing one.
func (s *credentialService) ownLease(ctx context.Context, leaseID string) (leases.Lease, error) {
	if leaseID == "" {
		return leases.Lease{}, connect.NewError(connect.CodeInvalidArgument, errors.New("lease_id is required"))
	}
	if err := checkCaps(fieldCap{"lease_id", leaseID, maxLeaseIDBytes}); err != nil {
		return leases.Lease{}, err
	}
	l, err := s.store.Get(ctx, leaseID)
	if err != nil {
		return leases.Lease{}, toConnect(ctx, s.log, "get lease", err)
	}
	id := caller(ctx)
	if !holds(id, l) && !s.rt().cfg.Policy().IsAdmin(id) {
		return leases.Lease{}, errLeaseNotFound
	}
	return l, nil
}

// holds reports whether id is the identity lease l was issued to.
func holds(id authn.Identity, l leases.Lease) bool {
	return l.Issuer == id.Issuer && l.Subject == id.Subject
}

func (s *credentialService) RenewLease(ctx context.Context, req *connect.Request[credbrokerv1.RenewLeaseRequest]) (*connect.Response[credbrokerv1.RenewLeaseResponse], error) {
	l, err := s.ownLease(ctx, req.Msg.GetLeaseId())
	if err != nil {
		return nil, err
	}
	if !l.Renewable {
		return nil, errNotRenewable
	}
	rt := s.rt()
	id := caller(ctx)
	grant := rt.cfg.Policy().Decide(id, l.Role)
	if grant.Role == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("role %q is no longer configured: the lease cannot be renewed", l.Role))
	}
	// The holder renews only while a policy still grants the role the way
	// the lease was issued; an admin may renew any lease.
	if holds(id, l) && !grant.Allowed(l.BreakGlass) {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("role %q is no longer granted to you (`credbroker whoami` shows what is): the lease cannot be renewed and ends at %s",
			l.Role, l.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if !grant.Renewable() {
		return nil, errNotRenewable
	}
	inc, _, err := leaseTTL(grant.Role, grant.MaxTTL(l.BreakGlass), req.Msg.GetIncrement(), "increment")
	if err != nil {
		return nil, err
	}
	plugin, ok := rt.plugins[l.Backend]
	if !ok {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("backend %q is no longer configured", l.Backend))
	}
	// Renewals of one lease take turns here, so the backend is not asked
	// to change one user concurrently; across replicas the store's
	// compare-and-set decides.
	unlock, err := s.renewing.lock(ctx, l.ID)
	if err != nil {
		return nil, toConnect(ctx, s.log, "renew", err)
	}
	defer unlock()
	var clamped bool
	// The store calls fn outside any transaction (a stalled backend holds
	// no store connection or lock), and again with the fresh lease if a
	// concurrent renewal won the race.
	spec := rt.roleSpec(l.Backend, l.Role)
	l, err = s.store.Renew(ctx, l.ID, actor(id), func(cur leases.Lease) (leases.Renewal, error) {
		// Renewal only ever moves the expiry forward, and never past the max.
		clamped = false
		next := s.now().Add(inc)
		if next.Before(cur.ExpiresAt) {
			next = cur.ExpiresAt
		}
		if next.After(cur.MaxExpiresAt) {
			next, clamped = cur.MaxExpiresAt, true
		}
		pctx, cancel := context.WithTimeout(ctx, pluginTimeout)
		defer cancel()
		resp, err := plugin.Renew(pctx, plugins.RenewRequest{
			Username:  cur.Username,
			Role:      cur.Role,
			Spec:      spec,
			State:     cur.StateForPlugin(),
			ExpiresAt: next,
		})
		if err != nil {
			return leases.Renewal{}, connect.NewError(connect.CodeUnavailable, fmt.Errorf("backend %s could not extend the user: %w", cur.Backend, err))
		}
		return leases.Renewal{ExpiresAt: next, PluginState: resp.State}, nil
	})
	if err != nil {
		return nil, toConnect(ctx, s.log, "renew", err)
	}
	s.metrics.renewed.WithLabelValues(l.Role).Inc()
	return connect.NewResponse(&credbrokerv1.RenewLeaseResponse{Lease: leaseProto(l), TtlClamped: clamped}), nil
}

func (s *credentialService) RevokeLease(ctx context.Context, req *connect.Request[credbrokerv1.RevokeLeaseRequest]) (*connect.Response[credbrokerv1.RevokeLeaseResponse], error) {
	l, err := s.ownLease(ctx, req.Msg.GetLeaseId())
	if err != nil {
		return nil, err
	}
	id := caller(ctx)
	reason := "revoked by holder"
	if !holds(id, l) {
		reason = "revoked by admin " + actor(id)
	}
	l, err = s.reaper.Revoke(context.WithoutCancel(ctx), l.ID, reason, actor(id))
	if err != nil {
		return nil, toConnect(ctx, s.log, "revoke", err)
	}
	return connect.NewResponse(&credbrokerv1.RevokeLeaseResponse{Lease: leaseProto(l)}), nil
}

func (s *credentialService) GetLease(ctx context.Context, req *connect.Request[credbrokerv1.GetLeaseRequest]) (*connect.Response[credbrokerv1.GetLeaseResponse], error) {
	l, err := s.ownLease(ctx, req.Msg.GetLeaseId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&credbrokerv1.GetLeaseResponse{Lease: leaseProto(l)}), nil
}

func (s *credentialService) ListLeases(ctx context.Context, req *connect.Request[credbrokerv1.ListLeasesRequest]) (*connect.Response[credbrokerv1.ListLeasesResponse], error) {
	id := caller(ctx)
	if n := req.Msg.GetPageSize(); n < 0 || n > 500 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("page_size must be between 0 and 500"))
	}
	if err := checkCaps(fieldCap{"page_token", req.Msg.GetPageToken(), maxPageTokenBytes}); err != nil {
		return nil, err
	}
	list, next, err := s.store.List(ctx, leases.ListFilter{
		Issuer:    id.Issuer,
		Subject:   id.Subject,
		State:     stateFromProto(req.Msg.GetState()),
		PageSize:  int(req.Msg.GetPageSize()),
		PageToken: req.Msg.GetPageToken(),
	})
	if err != nil {
		return nil, toConnect(ctx, s.log, "list leases", err)
	}
	out := &credbrokerv1.ListLeasesResponse{NextPageToken: next}
	for _, l := range list {
		out.Leases = append(out.Leases, leaseProto(l))
	}
	return connect.NewResponse(out), nil
}

func (s *credentialService) ListRoles(ctx context.Context, _ *connect.Request[credbrokerv1.ListRolesRequest]) (*connect.Response[credbrokerv1.ListRolesResponse], error) {
	out := &credbrokerv1.ListRolesResponse{}
	cfg := s.rt().cfg
	id := caller(ctx)
	for _, g := range cfg.Policy().Grants(id) {
		out.Roles = append(out.Roles, roleProto(cfg, g))
	}
	return connect.NewResponse(out), nil
}

// roleProto describes a granted role to the identity it is granted to.
func roleProto(cfg *Config, g Grant) *credbrokerv1.Role {
	r := g.Role
	b, _ := cfg.Backend(r.Backend)
	return &credbrokerv1.Role{
		Name:             r.Name,
		Backend:          r.Backend,
		Plugin:           b.driver.Name(), // the driver's (plugin: external's program's), which connect looks up
		DefaultTtl:       durationpb.New(min(r.DefaultTTL, g.MaxTTL(false))),
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
