package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
// died between 2 and 4: the broker logs in with the candidate (the backend
// took it: finish, step 4) or else with the current password (it did not:
// set the current password again, so that a change of the dead broker's
// still on its way is ordered before it, and roll back); when neither logs
// in, or the current one cannot be set again, both are kept and it tries
// again later, so no rotation ever leaves the broker without a working
// password.
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
	// The candidate first: a backend that holds both (Redis adds the new
	// password before it removes the old) has taken it.
	p, candErr := openBackend(tctx, b, adminPassword{value: cand.Value})
	if candErr == nil {
		_ = p.Close()
		done, err := s.store.FinishRotation(ctx, *cand, "broker")
		if err != nil {
			return err
		}
		s.log.Warn("finished a root rotation a broker abandoned: the backend had taken the new password",
			slog.String("backend", b.Name), slog.Int64("version", done.Version))
		s.noteRotated(b.Name, done.RotatedAt)
		return nil
	}
	current := adminPassword{}
	if cur != nil {
		current = adminPassword{version: cur.Version, value: cur.Value}
	}
	p, curErr := openBackend(tctx, b, current)
	if curErr != nil {
		return fmt.Errorf("neither the new admin password of an abandoned rotation (%v) nor the current one (%v) logs in; "+
			"both are kept and tried again", candErr, curErr)
	}
	// The dead broker's change may still be on its way: PostgreSQL goes on
	// with a statement whose client died, e.g. an ALTER ROLE waiting on a
	// lock, and commits it. Setting the current password again first puts
	// this change after that one (or makes that one fail): when it cannot
	// be set, both are kept and tried again. (A current password that is
	// the config's reference, not stored, cannot be set again here.)
	if rr, ok := p.(plugins.RootRotator); ok && !current.value.IsZero() {
		if _, err := rr.RotateRoot(tctx, plugins.RotateRootRequest{NewPassword: current.value}); err != nil {
			_ = p.Close()
			return fmt.Errorf("the new admin password of an abandoned rotation does not log in, but setting the current one again "+
				"(so that a change still on its way cannot land after the roll-back) failed: %w; both are kept and tried again",
				plugins.Sanitize(err, current.value, cand.Value))
		}
	}
	_ = p.Close()
	if err := s.store.AbortRotation(ctx, b.Name, cand.ID, "broker", "abandoned before the backend took the new password"); err != nil {
		return err
	}
	s.log.Warn("rolled back a root rotation a broker abandoned: the backend still has the current password", slog.String("backend", b.Name))
	return nil
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
	// What a broker that died left behind is resolved first.
	if err := s.recoverRotation(ctx, b, lock); err != nil {
		return leases.AdminSecret{}, false, fmt.Errorf("backend %s: %w", backend, err)
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
	if rerr != nil {
		// Whether the backend acted is found out by logging in.
		if err := s.recoverRotation(ctx, b, lock); err != nil {
			s.log.Error("a failed root rotation could not be resolved; it is tried again", slog.String("backend", backend),
				slog.String("error", plugins.SanitizeString(err.Error(), newPassword)))
		}
		_ = s.syncBackend(ctx, b)
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
