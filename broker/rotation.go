package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Root rotation, in this file: the broker sets a new random admin password
// on a backend, keeps it encrypted in the store (leases' admin_secrets), and
// from then on opens the backend with it instead of the config's reference.
//
// The protocol, crash-safe at every step:
//
//  1. Take the backend's rotation lock (a session advisory lock in the
//     store, which a broker that dies releases with its session).
//  2. Record the new password as the backend's candidate, encrypted.
//  3. Ask the plugin to set it on the backend (RootRotator).
//  4. Make the candidate current and record `root_rotated`, in one store
//     transaction; reopen the backend with the new password.
//
// A candidate found while its lock is free was abandoned by a broker that
// died between 2 and 4. The broker logs in with the candidate: when the
// backend took it, it finishes (step 4), setting it again first with the
// password of before retired where the backend may keep it beside the new
// one. Else it logs in with the current password (the config's included)
// and rolls the rotation forward: it sets the candidate itself and
// finishes, so that a change of the dead broker's still on its way sets
// the same password whenever it lands. When nothing logs in, or the
// candidate cannot be set, both are kept and it tries again later: no
// rotation ever leaves the broker without a working password, and none is
// rolled back once its candidate may have reached the backend. Only a
// rotation the plugin refuses before changing anything
// (plugins.ErrRotateRefused) is rolled back, at once.
//
// Every replica polls the stored versions (Options.SecretsPoll) and reopens
// a backend whose current password changed, finishes abandoned rotations,
// and rotates the backends whose connection.rotate.period has passed.

// adminPassword is a backend's admin password from the store, with the
// version it was stored as; the zero value means the config's reference.
type adminPassword struct {
	version int64
	value   secret.Value
}

// rotationHook runs at each stage of a rotation ("recorded" after the
// candidate is stored, "rotated" after the backend took it); an error makes
// the rotation stop there as if the broker had died: nothing is finished
// or rolled back. Tests set it.
var rotationHook = func(stage, backend string) error { return nil }

// openKeyring resolves store.kek into the store's keyring; nil without
// store.kek. Errors name the reference, never the key.
func openKeyring(refs KEKRefs) (*leases.Keyring, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	keys := make([][]byte, 0, len(refs))
	for i, ref := range refs {
		v, err := ref.ResolveRaw()
		if err != nil {
			return nil, fmt.Errorf("store.kek[%d]: %w", i, err)
		}
		key, err := leases.ParseKEK([]byte(v.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("store.kek[%d] (%s): %w", i, ref, err)
		}
		keys = append(keys, key)
	}
	kr, err := leases.NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("store.kek: %w", err)
	}
	return kr, nil
}

// storedPasswords returns the current stored admin password of every
// backend of cfg that has one, first finishing or rolling back the
// rotations abandoned by a broker that died.
func (s *Server) storedPasswords(ctx context.Context, cfg *Config) (map[string]adminPassword, error) {
	versions, err := s.store.AdminSecretVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("admin secrets: %w", err)
	}
	out := map[string]adminPassword{}
	for i := range cfg.Backends {
		b := &cfg.Backends[i]
		info, ok := versions[b.Name]
		if !ok {
			continue
		}
		if !s.store.HasKeyring() {
			return nil, fmt.Errorf("backend %s: the broker rotated its admin password and keeps it encrypted in the store, "+
				"but store.kek is not set: configure the key-encryption keys it was stored with", b.Name)
		}
		if info.Candidate != 0 {
			if err := s.recoverRotation(ctx, b, nil); err != nil {
				s.log.Warn("cannot resolve an abandoned root rotation now; trying again later",
					slog.String("backend", b.Name), slog.String("error", plugins.SanitizeString(err.Error())))
			}
		}
		cur, _, err := s.store.AdminSecrets(ctx, b.Name)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", b.Name, err)
		}
		if cur != nil {
			out[b.Name] = adminPassword{version: cur.Version, value: cur.Value}
		}
	}
	return out, nil
}

// openBackend opens b, with pw in place of its reference's password when
// pw is set.
func openBackend(ctx context.Context, b *BackendConfig, pw adminPassword) (plugins.Plugin, error) {
	return plugins.OpenAs(ctx, b.driver, b.connection, pw.value)
}

// recoverRotation resolves the candidate of b, if any, whose rotation was
// abandoned. lock is the rotation lock when the caller holds it; otherwise
// it is taken here, and nothing is done when another replica holds it (its
// rotation is alive).
func (s *Server) recoverRotation(ctx context.Context, b *BackendConfig, lock *leases.RotationLock) error {
	if lock == nil {
		l, ok, err := s.store.LockRotation(ctx, b.Name)
		if err != nil || !ok {
			return err
		}
		defer l.Unlock(ctx)
	}
	cur, cand, err := s.store.AdminSecrets(ctx, b.Name)
	if err != nil || cand == nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, pluginTimeout)
	defer cancel()
	current := adminPassword{}
	if cur != nil {
		current = adminPassword{version: cur.Version, value: cur.Value}
	}
	finish := func(how string) error {
		done, err := s.store.FinishRotation(ctx, *cand, "broker")
		if err != nil {
			return err
		}
		s.log.Warn("finished a root rotation a broker abandoned: "+how, slog.String("backend", b.Name), slog.Int64("version", done.Version))
		s.noteRotated(b.Name, done.RotatedAt)
		return nil
	}
	// The candidate first: a backend that holds both (Redis adds the new
	// password before it removes the old) has taken it.
	p, candErr := openBackend(tctx, b, adminPassword{value: cand.Value})
	if candErr == nil {
		// The backend takes the new password: it is current, whatever
		// follows. The dead broker may have stopped half-way (Redis with
		// both passwords and neither saved): setting the candidate again,
		// with the password of before retired, leaves what a finished
		// rotation leaves. When that fails it is said, and the next
		// rotation tidies up.
		retire := current.value
		if retire.IsZero() {
			retire = s.configPassword(tctx, b)
		}
		if err := s.setRoot(tctx, b, p, cand.Value, retire); err != nil {
			s.log.Error("finishing a root rotation a broker abandoned, but setting its password again failed: an earlier admin "+
				"password may still be valid beside it, or Redis's ACL file not hold it yet; rotate again once the backend is healthy",
				slog.String("backend", b.Name), slog.String("error", plugins.SanitizeString(err.Error(), cand.Value, retire)))
		}
		_ = p.Close()
		return finish("the backend had taken the new password")
	}
	p, curErr := openBackend(tctx, b, current)
	if curErr != nil {
		return fmt.Errorf("neither the new admin password of an abandoned rotation (%v) nor the current one (%v) logs in; "+
			"both are kept and tried again", candErr, curErr)
	}
	defer p.Close()
	// The backend has the current password, but the dead broker's change
	// may still be on its way: PostgreSQL goes on with a statement whose
	// client died (an ALTER ROLE waiting on a lock, say) and commits it,
	// and bytes a dead process sent are still delivered. So the rotation is
	// rolled forward: the candidate is set from here, and a change still on
	// its way sets the same password, whichever of the two lands last.
	// When that fails, whether the backend took it (or will) is not known:
	// neither password is dropped, and the next poll logs in with each
	// again. Never rolled back here: a roll-back dropping the candidate
	// while a change to it is on its way locks the broker out.
	if err := s.setRoot(tctx, b, p, cand.Value, secret.Value{}); err != nil {
		return fmt.Errorf("the new admin password of an abandoned rotation does not log in, and setting it failed: %w; "+
			"both are kept and tried again", err)
	}
	return finish("the new password is set")
}

// configPassword returns the admin password of b's config reference,
// which the broker does not store: the one its open plugin logged in with
// while no rotated password is current; at start, before there is a
// runtime, a plugin opened with the reference tells it (if it logs in).
// Zero when neither can.
func (s *Server) configPassword(ctx context.Context, b *BackendConfig) secret.Value {
	if rt := s.rt.Load(); rt != nil {
		if rt.passwords[b.Name].version == 0 {
			pw, _ := plugins.AdminPasswordOf(rt.plugins[b.Name])
			return pw
		}
		return secret.Value{}
	}
	q, err := openBackend(ctx, b, adminPassword{})
	if err != nil {
		return secret.Value{}
	}
	defer q.Close()
	pw, _ := plugins.AdminPasswordOf(q)
	return pw
}

// setRoot sets pw as the admin password of b's backend through p, taking
// retire away where the backend keeps several passwords and has it: what
// the recovery of an abandoned rotation does before it settles on pw. pw
// may be the password p logged in with. A zero pw (a plugin that cannot
// say which password it logged in with) or a plugin that cannot rotate is
// an error: the recovery then keeps both passwords rather than settle on
// one that a change still on its way may undo.
func (s *Server) setRoot(ctx context.Context, b *BackendConfig, p plugins.Plugin, pw, retire secret.Value) error {
	rr, ok := p.(plugins.RootRotator)
	if !ok || !plugins.CanRotateRoot(p) {
		return fmt.Errorf("backend %s: %w", b.Name, plugins.ErrRotateUnsupported)
	}
	if pw.IsZero() {
		return fmt.Errorf("backend %s: the plugin cannot tell the admin password it logged in with", b.Name)
	}
	_, err := rr.RotateRoot(ctx, plugins.RotateRootRequest{NewPassword: pw, Retire: retire})
	return plugins.Sanitize(err, pw, retire)
}

// errRotationBusy: another replica is rotating the backend.
func errRotationBusy(backend string) error {
	return connect.NewError(connect.CodeAborted, fmt.Errorf("a root rotation of backend %s is running (on this or another replica): wait for it and check `credbroker admin inventory`", backend))
}

// rotateRoot rotates the admin password of backend now. force is false for
// the periodic rotation, which then only rotates when the period has passed
// (another replica may have just done it).
func (s *Server) rotateRoot(ctx context.Context, backend, actor string, force bool) (_ leases.AdminSecret, rotated bool, err error) {
	rt := s.rt.Load()
	b, ok := rt.cfg.Backend(backend)
	if !ok {
		return leases.AdminSecret{}, false, connect.NewError(connect.CodeNotFound, fmt.Errorf("no backend %q in the config", backend))
	}
	if !s.store.HasKeyring() {
		return leases.AdminSecret{}, false, connect.NewError(connect.CodeFailedPrecondition, errNoKEK)
	}
	if !plugins.CanRotateRoot(rt.plugins[backend]) {
		return leases.AdminSecret{}, false, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("backend %s: plugin %s cannot rotate its admin password", backend, b.Plugin))
	}
	lock, ok, err := s.store.LockRotation(ctx, backend)
	if err != nil {
		return leases.AdminSecret{}, false, err
	}
	if !ok {
		return leases.AdminSecret{}, false, errRotationBusy(backend)
	}
	defer lock.Unlock(ctx)
	// What a broker that died left behind is resolved first. A rotation
	// it finishes is this call's: starting another at once would let a
	// dead broker's change still on its way (to the password just
	// finished) land after it.
	if _, abandoned, err := s.store.AdminSecrets(ctx, backend); err != nil {
		return leases.AdminSecret{}, false, err
	} else if abandoned != nil {
		if err := s.recoverRotation(ctx, b, lock); err != nil {
			return leases.AdminSecret{}, false, fmt.Errorf("backend %s: %w", backend, err)
		}
		if cur, _, err := s.store.AdminSecrets(ctx, backend); err == nil && cur != nil && cur.ID == abandoned.ID {
			_ = s.syncBackend(ctx, b)
			s.log.Info("root rotation: finished the one a broker abandoned instead of starting another", slog.String("backend", backend))
			return *cur, true, nil
		}
	}
	if !force && b.Rotate != nil {
		versions, err := s.store.AdminSecretVersions(ctx)
		if err != nil {
			return leases.AdminSecret{}, false, err
		}
		if info := versions[backend]; info.Current != 0 && s.now().Sub(info.RotatedAt) < b.Rotate.Period {
			return leases.AdminSecret{}, false, nil // another replica just did it
		}
	}
	// The backend's plugin as the store now says it is (the recovery may
	// have changed it).
	if err := s.syncBackend(ctx, b); err != nil {
		return leases.AdminSecret{}, false, err
	}
	p := s.rt.Load().plugins[backend]
	rr, ok := p.(plugins.RootRotator)
	if !ok {
		return leases.AdminSecret{}, false, fmt.Errorf("backend %s: %w", backend, plugins.ErrRotateUnsupported)
	}
	newPassword := plugins.NewPassword()
	cand, err := s.store.BeginRotation(ctx, backend, newPassword, actor)
	if err != nil {
		return leases.AdminSecret{}, false, err
	}
	if err := rotationHook("recorded", backend); err != nil {
		return leases.AdminSecret{}, false, err
	}
	// The rest is finished even if the caller goes away: the backend may
	// have the new password already.
	ctx = context.WithoutCancel(ctx)
	tctx, cancel := context.WithTimeout(ctx, pluginTimeout)
	_, rerr := rr.RotateRoot(tctx, plugins.RotateRootRequest{NewPassword: newPassword})
	cancel()
	if rerr != nil && (errors.Is(rerr, plugins.ErrRotateRefused) || errors.Is(rerr, plugins.ErrRotateUnsupported)) {
		// The plugin refused before it changed anything, and this
		// candidate was never sent anywhere: rolled back.
		if err := s.store.AbortRotation(ctx, backend, cand.ID, actor, plugins.SanitizeString(rerr.Error(), newPassword)); err != nil {
			s.log.Error("a refused root rotation could not be rolled back; the next poll resolves it", slog.String("backend", backend),
				slog.String("error", plugins.SanitizeString(err.Error(), newPassword)))
		}
		return leases.AdminSecret{}, false, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("backend %s: rotate the admin password: %w", backend, plugins.Sanitize(rerr, newPassword)))
	}
	if rerr != nil {
		// Whether the backend acted is found out by logging in; the
		// recovery rolls forward where it can.
		if err := s.recoverRotation(ctx, b, lock); err != nil {
			s.log.Error("a failed root rotation could not be resolved; it is tried again", slog.String("backend", backend),
				slog.String("error", plugins.SanitizeString(err.Error(), newPassword)))
		}
		_ = s.syncBackend(ctx, b)
		if cur, _, err := s.store.AdminSecrets(ctx, backend); err == nil && cur != nil && cur.ID == cand.ID {
			s.log.Warn("root rotated on a second attempt", slog.String("backend", backend),
				slog.String("first_attempt", plugins.SanitizeString(rerr.Error(), newPassword)))
			return *cur, true, nil
		}
		return leases.AdminSecret{}, false, fmt.Errorf("backend %s: rotate the admin password: %w", backend, plugins.Sanitize(rerr, newPassword))
	}
	if err := rotationHook("rotated", backend); err != nil {
		return leases.AdminSecret{}, false, err
	}
	done, err := s.store.FinishRotation(ctx, cand, actor)
	if err != nil {
		// The candidate stays recorded: the next poll finishes it.
		return leases.AdminSecret{}, false, err
	}
	s.noteRotated(backend, done.RotatedAt)
	if err := s.syncBackend(ctx, b); err != nil {
		s.log.Warn("rotated the admin password but cannot reopen the backend with it yet", slog.String("backend", backend),
			slog.String("error", plugins.SanitizeString(err.Error(), newPassword)))
	}
	s.log.Info("root rotated", slog.String("backend", backend), slog.String("actor", actor), slog.Int64("version", done.Version))
	return done, true, nil
}

// errNoKEK is the answer to a call that needs store.kek.
var errNoKEK = errors.New("store.kek is not set: admin secrets are not stored and root rotation is off; set store.kek to a reference to 32 random bytes and restart")

// syncBackend reopens b when the store's current admin password is not the
// one its open plugin uses.
func (s *Server) syncBackend(ctx context.Context, b *BackendConfig) error {
	versions, err := s.store.AdminSecretVersions(ctx)
	if err != nil {
		return err
	}
	want := versions[b.Name].Current
	if s.rt.Load().passwords[b.Name].version == want {
		return nil
	}
	pw := adminPassword{}
	if want != 0 {
		cur, _, err := s.store.AdminSecrets(ctx, b.Name)
		if err != nil {
			return err
		}
		if cur != nil {
			pw = adminPassword{version: cur.Version, value: cur.Value}
		}
	}
	return s.reopenBackend(ctx, b.Name, pw)
}

// reopenBackend opens the backend called name with pw and puts it in
// place of the runtime's plugin; the old one is closed once the requests
// using it are done (after at most the plugin timeout).
func (s *Server) reopenBackend(ctx context.Context, name string, pw adminPassword) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.rt.Load()
	if old.passwords[name].version == pw.version {
		return nil // done meanwhile
	}
	b, ok := old.cfg.Backend(name)
	if !ok {
		return nil // gone by a reload
	}
	tctx, cancel := context.WithTimeout(ctx, pluginTimeout)
	defer cancel()
	p, err := openBackend(tctx, b, pw)
	if err != nil {
		return fmt.Errorf("backend %s: reopen with the stored admin password: %w", name, err)
	}
	next := *old
	next.plugins = maps.Clone(old.plugins)
	next.passwords = maps.Clone(old.passwords)
	next.plugins[name] = p
	next.passwords[name] = pw
	s.rt.Store(&next)
	retired := old.plugins[name]
	s.retire(func() {
		if err := retired.Close(); err != nil {
			s.log.Warn("close backend", slog.String("backend", name), slog.String("error", err.Error()))
		}
	})
	s.log.Info("backend reopened with the stored admin password", slog.String("backend", name), slog.Int64("version", pw.version))
	return nil
}

// notePeriods exports each backend's connection.rotate.period, for the
// rotation-overdue alert, and drops the series of a backend that no
// longer has one (a reload took it away).
func (s *Server) notePeriods(cfg *Config) {
	if s.svc == nil {
		return
	}
	s.periodsMu.Lock()
	defer s.periodsMu.Unlock()
	now := map[string]bool{}
	for _, b := range cfg.Backends {
		if b.Rotate != nil {
			now[b.Name] = true
			s.svc.metrics.rotatePeriod.WithLabelValues(b.Name).Set(b.Rotate.Period.Seconds())
		}
	}
	for name := range s.periods {
		if !now[name] {
			s.svc.metrics.rotatePeriod.DeleteLabelValues(name)
		}
	}
	s.periods = now
}

// reopenedSince returns backend's plugin reopened with the store's admin
// password, and true, when that is no longer the password used was opened
// with: another replica rotated it (or a broker died mid-rotation after
// its change landed, which is resolved here) and this one's poll has not
// caught up, so the sessions used's pool opens now are refused. A backend
// call that failed is made once more with it. False when nothing changed (or
// without store.kek): the failure stands.
func (s *Server) reopenedSince(ctx context.Context, backend string, used plugins.Plugin) (plugins.Plugin, bool) {
	if !s.store.HasKeyring() || ctx.Err() != nil {
		return nil, false
	}
	b, ok := s.rt.Load().cfg.Backend(backend)
	if !ok {
		return nil, false
	}
	check := func() error {
		versions, err := s.store.AdminSecretVersions(ctx)
		if err != nil {
			return err
		}
		// A rotation a broker abandoned may be why the backend refuses
		// this replica now (its change landed): resolved here rather than
		// at the next poll. A live rotation holds the lock; then this
		// does nothing.
		if versions[backend].Candidate != 0 {
			if err := s.recoverRotation(ctx, b, nil); err != nil {
				s.log.Warn("cannot resolve an abandoned root rotation now; trying again later",
					slog.String("backend", backend), slog.String("error", plugins.SanitizeString(err.Error())))
			}
		}
		return s.syncBackend(ctx, b)
	}
	if err := s.resyncs.do(ctx, backend, check); err != nil {
		s.log.Warn("a backend call failed; cannot check the stored admin password", slog.String("backend", backend),
			slog.String("error", plugins.SanitizeString(err.Error())))
		return nil, false
	}
	p, ok := s.rt.Load().plugins[backend]
	return p, ok && p != used
}

// resyncs runs the checks of reopenedSince one at a time per backend, so a
// flood of failing calls makes one store query (and at most one reopen)
// at a time, not one each. A call joins the check under way only if that
// check started after the call failed: one that started before may have
// read the store before another replica's rotation finished.
type resyncs struct {
	mu      sync.Mutex
	running map[string]*resyncCall
}

type resyncCall struct {
	start time.Time
	done  chan struct{}
	err   error
}

func (r *resyncs) do(ctx context.Context, backend string, check func() error) error {
	failed := time.Now()
	for {
		r.mu.Lock()
		c := r.running[backend]
		if c == nil {
			c = &resyncCall{start: time.Now(), done: make(chan struct{})}
			if r.running == nil {
				r.running = map[string]*resyncCall{}
			}
			r.running[backend] = c
			r.mu.Unlock()
			c.err = check()
			r.mu.Lock()
			delete(r.running, backend)
			r.mu.Unlock()
			close(c.done)
			return c.err
		}
		r.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !c.start.Before(failed) {
			return c.err
		}
	}
}

// retryRotated is a plugin the reaper revokes with: a Revoke that fails
// is made once more when another replica has rotated the backend's admin
// password since (see reopenedSince).
type retryRotated struct {
	plugins.Plugin
	backend string
	s       *Server
}

// UpgradeState forwards to the plugin's, as the sanitizing decorator every
// plugin is wrapped in does: the reaper's upgrade of old leases asks it.
func (r retryRotated) UpgradeState(ctx context.Context, req plugins.UpgradeStateRequest) ([]byte, error) {
	if u, ok := r.Plugin.(plugins.StateUpgrader); ok {
		return u.UpgradeState(ctx, req)
	}
	return nil, nil
}

var _ plugins.StateUpgrader = retryRotated{}

func (r retryRotated) Revoke(ctx context.Context, req plugins.RevokeRequest) (plugins.RevokeResponse, error) {
	resp, err := r.Plugin.Revoke(ctx, req)
	if err != nil {
		if p, ok := r.s.reopenedSince(ctx, r.backend, r.Plugin); ok {
			return p.Revoke(ctx, req)
		}
	}
	return resp, err
}

// noteRotated exports when backend was last rotated.
func (s *Server) noteRotated(backend string, at time.Time) {
	if s.svc != nil && !at.IsZero() {
		s.svc.metrics.rootRotated.WithLabelValues(backend).Set(float64(at.UnixNano()) / 1e9)
	}
}

// SyncAdminSecrets is one pass of what every replica does every
// Options.SecretsPoll: reopen the backends whose stored admin password
// changed, resolve abandoned rotations, rotate the backends whose
// connection.rotate.period has passed, and export each backend's last
// rotation. It returns the first error and goes on past it.
func (s *Server) SyncAdminSecrets(ctx context.Context) error {
	versions, err := s.store.AdminSecretVersions(ctx)
	if err != nil {
		return err
	}
	rt := s.rt.Load()
	s.notePeriods(rt.cfg)
	var errs []error
	for i := range rt.cfg.Backends {
		b := &rt.cfg.Backends[i]
		info := versions[b.Name]
		s.noteRotated(b.Name, info.RotatedAt)
		if !s.store.HasKeyring() {
			continue
		}
		if info.Candidate != 0 {
			if err := s.recoverRotation(ctx, b, nil); err != nil {
				errs = append(errs, fmt.Errorf("backend %s: %w", b.Name, err))
			}
		}
		if info.Current != rt.passwords[b.Name].version || info.Candidate != 0 {
			if err := s.syncBackend(ctx, b); err != nil {
				errs = append(errs, err)
			}
		}
		if b.Rotate != nil && (info.Current == 0 || s.now().Sub(info.RotatedAt) >= b.Rotate.Period) {
			if _, _, err := s.rotateRoot(ctx, b.Name, "broker", false); err != nil && connect.CodeOf(err) != connect.CodeAborted {
				errs = append(errs, fmt.Errorf("backend %s: periodic root rotation: %w", b.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// syncAdminSecrets runs SyncAdminSecrets every poll until ctx is done.
func (s *Server) syncAdminSecrets(ctx context.Context, poll time.Duration) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if err := s.SyncAdminSecrets(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("admin secrets", slog.String("error", plugins.SanitizeString(err.Error())))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
