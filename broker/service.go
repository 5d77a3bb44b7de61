package broker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"

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
	issued      *issuedLeases // nil unless Options.TrackIssued
	// reopened is Server.reopenedSince: the backend's plugin anew when
	// another replica rotated its admin password since used was opened.
	reopened func(ctx context.Context, backend string, used plugins.Plugin) (plugins.Plugin, bool)
}

// call runs f with p, backend's plugin, and runs it once more with the
// plugin reopened when it fails and another replica has rotated the
// backend's admin password since p was opened: until this replica's poll
// sees the rotation, the sessions p's pool opens are refused.
func (s *credentialService) call(ctx context.Context, backend string, p plugins.Plugin, f func(plugins.Plugin) error) error {
	err := f(p)
	if err == nil || s.reopened == nil {
		return err
	}
	if q, ok := s.reopened(ctx, backend, p); ok {
		return f(q)
	}
	return err
}

var _ credbrokerv1connect.CredentialServiceHandler = (*credentialService)(nil)

func caller(ctx context.Context) authn.Identity {
	id, _ := IdentityFrom(ctx) // the auth interceptor guarantees one
	return id
}

// actor names an identity in lease events.
func actor(id authn.Identity) string { return id.Issuer + ":" + id.Subject }

// reply is how every handler answers: the response, or its error through
// the one mapper, toConnect, as op.
func reply[T any](ctx context.Context, log *slog.Logger, op string, msg *T, err error) (*connect.Response[T], error) {
	if err != nil {
		return nil, toConnect(ctx, log, op, err)
	}
	return connect.NewResponse(msg), nil
}

func (s *credentialService) IssueCredential(ctx context.Context, req *connect.Request[credbrokerv1.IssueCredentialRequest]) (*connect.Response[credbrokerv1.IssueCredentialResponse], error) {
	out, err := s.issue(ctx, req.Msg)
	return reply(ctx, s.log, "issue", out, err)
}

func (s *credentialService) issue(ctx context.Context, msg *credbrokerv1.IssueCredentialRequest) (*credbrokerv1.IssueCredentialResponse, error) {
	start := time.Now()
	id := caller(ctx)
	reason := msg.GetBreakGlassReason()
	if err := checkCaps(fieldCap{"role", msg.GetRole(), maxNameBytes}, fieldCap{"break_glass_reason", reason, maxReasonBytes}); err != nil {
		return nil, err
	}
	rt := s.rt()
	breakGlass := reason != ""
	grant, deny := rt.cfg.Policy().DecideIssue(id, msg.GetRole(), breakGlass)
	role := grant.Role
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
		return nil, deny
	}
	if !s.limits.allow(actor(id)) {
		return nil, errIssueRate
	}
	requested, err := requestedTTL(msg.GetTtl(), "ttl")
	if err != nil {
		return nil, err
	}
	// A break-glass lease is capped by the time limit of emergency access.
	maxTTL := grant.MaxTTL(breakGlass)
	ttl, clamped := grant.TTL(breakGlass, requested)
	backend := rt.cfg.catalog.backend(role.Backend)
	plugin := rt.plugins[backend.Name]
	// A backend known to be down is answered before a lease is written.
	if a, ok := plugin.(plugins.Availability); ok {
		if err := a.Available(); plugins.IsUnavailable(err) {
			s.metrics.issued.WithLabelValues(role.Name, "backend_error").Inc()
			s.log.WarnContext(ctx, "issue refused: the backend is down", slog.String("backend", backend.Name), slog.String("error", err.Error()))
			return nil, errBackendUnreachable(backend.Name)
		}
	}

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
		return nil, err
	}
	s.issued.add(lease.ID)

	// From here the lease exists: finish it even if the caller goes away, so
	// it ends ACTIVE or handed to the reaper, never in between.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), pluginTimeout)
	defer cancel()
	req := plugins.CreateRequest{
		Username:  lease.Username,
		Password:  plugins.NewPasswordFor(plugin),
		ExpiresAt: lease.ExpiresAt,
		Role:      role.Name,
		Spec:      role.spec,
	}
	var created plugins.CreateResponse
	err = s.call(work, backend.Name, plugin, func(p plugins.Plugin) (err error) {
		created, err = p.Create(work, req)
		return err
	})
	if err != nil {
		// The plugin's decorator (plugins.Open) has redacted the password.
		s.metrics.issued.WithLabelValues(role.Name, "backend_error").Inc()
		s.log.ErrorContext(ctx, "backend create failed; the reaper will clean up", slog.String("lease_id", lease.ID), slog.String("backend", backend.Name), slog.String("error", err.Error()))
		if ferr := s.store.Fail(work, lease.ID, actor(id), err.Error()); ferr != nil {
			s.log.ErrorContext(ctx, "could not mark failed issue for the reaper; the pending grace will catch it", slog.String("lease_id", lease.ID), slog.String("error", plugins.SanitizeString(ferr.Error())))
		}
		if plugins.IsUnavailable(err) {
			return nil, errBackendUnreachable(backend.Name)
		}
		return nil, errBackendRefused(backend.Name, err)
	}
	details := map[string]string{"role": role.Name, "ttl": ttl.String()}
	if breakGlass {
		details["break_glass_reason"] = reason
	}
	lease, err = s.store.Activate(work, lease, actor(id), created.State, details)
	if err != nil {
		// The reaper owns the lease now (or will after the grace) and will
		// delete the user; the caller gets nothing half-made.
		return nil, err
	}
	if lease.BreakGlass {
		s.metrics.breakGlass.WithLabelValues(role.Name).Inc()
		s.log.WarnContext(ctx, "break-glass credential issued", slog.String("lease_id", lease.ID), slog.String("role", role.Name), slog.String("subject", id.Subject), slog.String("reason", reason), slog.Time("max_expires_at", lease.MaxExpiresAt))
		if err := s.store.RecordEvent(work, leases.Event{LeaseID: lease.ID, Kind: "break_glass", Actor: actor(id), Details: details}); err != nil {
			s.log.ErrorContext(ctx, "record break-glass event", slog.String("error", plugins.SanitizeString(err.Error())))
		}
	}
	s.metrics.issued.WithLabelValues(role.Name, "ok").Inc()
	s.metrics.issueSeconds.WithLabelValues(backend.Name).Observe(time.Since(start).Seconds())
	s.log.InfoContext(ctx, "credential issued", slog.String("lease_id", lease.ID), slog.String("role", role.Name), slog.String("username", lease.Username), slog.String("subject", id.Subject), slog.Time("expires_at", lease.ExpiresAt))
	return &credbrokerv1.IssueCredentialResponse{
		Lease:      leaseProto(lease),
		Credential: credentialProto(created.Credential),
		TtlClamped: clamped,
	}, nil
}

// ownLease fetches a lease the caller holds (or any lease for an admin).
// Someone else's lease is reported exactly like a missing one.
func (s *credentialService) ownLease(ctx context.Context, leaseID string) (leases.Lease, error) {
	if err := checkLeaseID(leaseID); err != nil {
		return leases.Lease{}, err
	}
	l, err := s.store.Get(ctx, leaseID)
	if err != nil {
		// Mapped here, as "get lease", whichever call looked the lease up.
		return leases.Lease{}, toConnect(ctx, s.log, "get lease", err)
	}
	id := caller(ctx)
	if !holds(id, l) && !s.rt().cfg.Policy().IsAdmin(id) {
		return leases.Lease{}, errLeaseNotFound
	}
	return l, nil
}

// checkLeaseID refuses a lease id that is missing or too long.
func checkLeaseID(leaseID string) error {
	if leaseID == "" {
		return errLeaseIDRequired
	}
	return checkCaps(fieldCap{"lease_id", leaseID, maxLeaseIDBytes})
}

// holds reports whether id is the identity lease l was issued to.
func holds(id authn.Identity, l leases.Lease) bool {
	return l.Issuer == id.Issuer && l.Subject == id.Subject
}

func (s *credentialService) RenewLease(ctx context.Context, req *connect.Request[credbrokerv1.RenewLeaseRequest]) (*connect.Response[credbrokerv1.RenewLeaseResponse], error) {
	out, err := s.renew(ctx, req.Msg)
	return reply(ctx, s.log, "renew", out, err)
}

func (s *credentialService) renew(ctx context.Context, msg *credbrokerv1.RenewLeaseRequest) (*credbrokerv1.RenewLeaseResponse, error) {
	l, err := s.ownLease(ctx, msg.GetLeaseId())
	if err != nil {
		return nil, err
	}
	rt := s.rt()
	id := caller(ctx)
	grant, err := rt.cfg.Policy().DecideRenewal(id, l)
	if err != nil {
		return nil, err
	}
	requested, err := requestedTTL(msg.GetIncrement(), "increment")
	if err != nil {
		return nil, err
	}
	inc, _ := grant.TTL(l.BreakGlass, requested)
	plugin, ok := rt.plugins[l.Backend]
	if !ok {
		return nil, errBackendGone(l.Backend)
	}
	// Renewals of one lease take turns here, so the backend is not asked
	// to change one user concurrently; across replicas the store's
	// compare-and-set decides.
	unlock, err := s.renewing.lock(ctx, l.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var clamped bool
	// The store calls fn outside any transaction (a stalled backend holds
	// no store connection or lock), and again with the fresh lease if a
	// concurrent renewal won the race.
	spec := rt.cfg.catalog.roleSpec(l.Backend, l.Role)
	l, err = s.store.RenewSeen(ctx, l, actor(id), func(cur leases.Lease) (leases.Renewal, error) {
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
		req := plugins.RenewRequest{
			Username:  cur.Username,
			Role:      cur.Role,
			Spec:      spec,
			State:     cur.StateForPlugin(),
			ExpiresAt: next,
		}
		var resp plugins.RenewResponse
		err := s.call(pctx, cur.Backend, plugin, func(p plugins.Plugin) (err error) {
			resp, err = p.Renew(pctx, req)
			return err
		})
		if err != nil {
			return leases.Renewal{}, errBackendRenew(cur.Backend, err)
		}
		return leases.Renewal{ExpiresAt: next, PluginState: resp.State}, nil
	})
	if err != nil {
		return nil, err
	}
	s.metrics.renewed.WithLabelValues(l.Role).Inc()
	return &credbrokerv1.RenewLeaseResponse{Lease: leaseProto(l), TtlClamped: clamped}, nil
}

func (s *credentialService) RevokeLease(ctx context.Context, req *connect.Request[credbrokerv1.RevokeLeaseRequest]) (*connect.Response[credbrokerv1.RevokeLeaseResponse], error) {
	out, err := s.revoke(ctx, req.Msg)
	return reply(ctx, s.log, "revoke", out, err)
}

func (s *credentialService) revoke(ctx context.Context, msg *credbrokerv1.RevokeLeaseRequest) (*credbrokerv1.RevokeLeaseResponse, error) {
	id := caller(ctx)
	if !s.rt().cfg.Policy().IsAdmin(id) {
		return s.revokeHeld(ctx, msg.GetLeaseId(), id)
	}
	l, err := s.ownLease(ctx, msg.GetLeaseId())
	if err != nil {
		return nil, err
	}
	reason := "revoked by holder"
	if !holds(id, l) {
		reason = "revoked by admin " + actor(id)
	}
	l, err = s.reaper.Revoke(context.WithoutCancel(ctx), l.ID, reason, actor(id))
	if err != nil {
		return nil, err
	}
	return &credbrokerv1.RevokeLeaseResponse{Lease: leaseProto(l)}, nil
}

// revokeHeld revokes a lease for its holder: whether id holds it is checked
// by the claim that starts the revoke, in one statement, rather than by
// reading the lease first. Someone else's lease is answered exactly like a
// missing one, as ownLease does.
func (s *credentialService) revokeHeld(ctx context.Context, leaseID string, id authn.Identity) (*credbrokerv1.RevokeLeaseResponse, error) {
	if err := checkLeaseID(leaseID); err != nil {
		return nil, err
	}
	l, err := s.reaper.RevokeHeld(context.WithoutCancel(ctx), leaseID, leases.Holder{Issuer: id.Issuer, Subject: id.Subject},
		"revoked by holder", actor(id))
	if errors.Is(err, leases.ErrNotHeld) || errors.Is(err, leases.ErrNotFound) {
		return nil, errLeaseNotFound
	}
	if err != nil {
		return nil, err
	}
	return &credbrokerv1.RevokeLeaseResponse{Lease: leaseProto(l)}, nil
}

func (s *credentialService) GetLease(ctx context.Context, req *connect.Request[credbrokerv1.GetLeaseRequest]) (*connect.Response[credbrokerv1.GetLeaseResponse], error) {
	out, err := s.getLease(ctx, req.Msg)
	return reply(ctx, s.log, "get lease", out, err)
}

func (s *credentialService) getLease(ctx context.Context, msg *credbrokerv1.GetLeaseRequest) (*credbrokerv1.GetLeaseResponse, error) {
	l, err := s.ownLease(ctx, msg.GetLeaseId())
	if err != nil {
		return nil, err
	}
	return &credbrokerv1.GetLeaseResponse{Lease: leaseProto(l)}, nil
}

func (s *credentialService) ListLeases(ctx context.Context, req *connect.Request[credbrokerv1.ListLeasesRequest]) (*connect.Response[credbrokerv1.ListLeasesResponse], error) {
	out, err := s.listLeases(ctx, req.Msg)
	return reply(ctx, s.log, "list leases", out, err)
}

func (s *credentialService) listLeases(ctx context.Context, msg *credbrokerv1.ListLeasesRequest) (*credbrokerv1.ListLeasesResponse, error) {
	id := caller(ctx)
	if n := msg.GetPageSize(); n < 0 || n > 500 {
		return nil, errPageSize
	}
	if err := checkCaps(fieldCap{"page_token", msg.GetPageToken(), maxPageTokenBytes}); err != nil {
		return nil, err
	}
	list, next, err := s.store.List(ctx, leases.ListFilter{
		Issuer:    id.Issuer,
		Subject:   id.Subject,
		State:     stateFromProto(msg.GetState()),
		PageSize:  int(msg.GetPageSize()),
		PageToken: msg.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	return &credbrokerv1.ListLeasesResponse{Leases: leasesProto(list), NextPageToken: next}, nil
}

func (s *credentialService) ListRoles(ctx context.Context, _ *connect.Request[credbrokerv1.ListRolesRequest]) (*connect.Response[credbrokerv1.ListRolesResponse], error) {
	out := &credbrokerv1.ListRolesResponse{}
	cfg := s.rt().cfg
	for _, g := range cfg.Policy().Grants(caller(ctx)) {
		out.Roles = append(out.Roles, roleProto(cfg.catalog, g))
	}
	return reply(ctx, s.log, "list roles", out, nil)
}
