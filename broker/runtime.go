package broker

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/plugins"
)

// runtime is everything a config reload replaces as a whole: the config, the
// open backends (with their freshly resolved secrets) and the token
// verifier. Requests load the current runtime once and use it throughout, so
// a reload never mixes an old role with a new backend.
type runtime struct {
	cfg *Config
	// plugins are the open backends, by backend name, each opened with
	// plugins.Open: their errors and warnings are sanitized already.
	plugins  map[string]plugins.Plugin
	verifier *authn.Verifier
	// passwords are the stored admin passwords the plugins were opened
	// with, by backend; a backend without one uses its config reference.
	passwords map[string]adminPassword
}

// target is the reaper's lookup: the plugin of backend and the current spec
// of role on it.
func (rt *runtime) target(backend, role string) (plugins.Plugin, any, bool) {
	p, ok := rt.plugins[backend]
	if !ok {
		return nil, nil, false
	}
	return p, rt.cfg.catalog.roleSpec(backend, role), true
}

// openRuntime opens every backend of cfg, checks its roles against the live
// backends and loads the issuers' keys. On error it closes what it opened.
func openRuntime(ctx context.Context, cfg *Config, log *slog.Logger, now func() time.Time, passwords map[string]adminPassword) (_ *runtime, err error) {
	rt := &runtime{cfg: cfg, plugins: map[string]plugins.Plugin{}, passwords: map[string]adminPassword{}}
	defer func() {
		if err != nil {
			rt.close(log)
		}
	}()
	// The programs of plugin: external backends log through the broker.
	cfg.SetPluginLogger(log)
	for i := range cfg.Backends {
		b := &cfg.Backends[i]
		// The one place plugins are opened: plugins.Open wraps each in the
		// sanitizing decorator, so no caller sanitizes a plugin's error again.
		// A backend whose root the broker rotated opens with the stored
		// password, not its reference's.
		p, err := openBackend(ctx, b, passwords[b.Name]) // built in, or plugin: external's program
		if err != nil {
			return nil, fmt.Errorf("backend %s (%s): %w", b.Name, b.Plugin, err)
		}
		rt.plugins[b.Name] = p
		rt.passwords[b.Name] = passwords[b.Name]
		if b.Rotate != nil {
			if !plugins.CanRotateRoot(p) {
				return nil, fmt.Errorf("backend %s: connection.rotate: plugin %s cannot rotate its admin password", b.Name, b.Plugin)
			}
		}
		if w, ok := p.(plugins.Warner); ok {
			for _, msg := range w.Warnings(ctx) {
				log.Warn("backend warning", slog.String("backend", b.Name), slog.String("plugin", b.Plugin), slog.String("warning", msg))
			}
		}
	}
	for i := range cfg.Roles {
		r := &cfg.Roles[i]
		if err := rt.plugins[r.Backend].CheckRole(ctx, r.spec); err != nil {
			return nil, fmt.Errorf("role %s on backend %s: %w", r.Name, r.Backend, err)
		}
	}
	rt.verifier, err = authn.NewVerifier(ctx, authn.Config{Issuers: cfg.Issuers, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("issuers: %w", err)
	}
	return rt, nil
}

func (rt *runtime) close(log *slog.Logger) {
	if rt.verifier != nil {
		rt.verifier.Close()
	}
	for name, p := range rt.plugins {
		if err := p.Close(); err != nil {
			log.Warn("close backend", slog.String("backend", name), slog.String("error", err.Error()))
		}
	}
}

// swept returns the backends the reaper sweeps for orphans.
func (rt *runtime) swept() []string {
	var names []string
	for _, b := range rt.cfg.Backends {
		if *b.Sweep {
			names = append(names, b.Name)
		}
	}
	return names
}

// Reload replaces the config with cfg: it re-resolves every secret, reopens
// the backends and reloads the issuers' keys, then switches requests over.
// It also re-reads the TLS certificate, key and client CA files (named by the
// new config), which new connections then get; open connections keep theirs.
// Requests already running finish on the old backends, which are closed once
// they are done (after at most the plugin timeout). If anything fails, the
// running config stays in force and the error says why. The store, listen
// and metrics_listen addresses, turning TLS on or off, the reaper and the
// limits are fixed at start; a change to them is reported as needing a
// restart and otherwise ignored.
func (s *Server) Reload(ctx context.Context, cfg *Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.rt.Load()
	var restart []string
	if !reflect.DeepEqual(cfg.Store, old.cfg.Store) {
		restart = append(restart, "store")
	}
	if cfg.Reaper != old.cfg.Reaper {
		restart = append(restart, "reaper")
	}
	if cfg.Limits != old.cfg.Limits {
		restart = append(restart, "limits")
	}
	if cfg.Listen != old.cfg.Listen {
		restart = append(restart, "listen")
	}
	if cfg.MetricsListen != old.cfg.MetricsListen {
		restart = append(restart, "metrics_listen")
	}
	var certs *tlsMaterial
	switch {
	case (cfg.TLS == nil) != (old.cfg.TLS == nil):
		restart = append(restart, "tls")
	case cfg.TLS != nil && s.certs != nil:
		var err error
		if certs, err = loadTLS(cfg.TLS); err != nil {
			return fmt.Errorf("reload: the running config stays in force: %w", err)
		}
	}
	passwords, err := s.storedPasswords(ctx, cfg)
	if err != nil {
		return fmt.Errorf("reload: the running config stays in force: %w", err)
	}
	rt, err := openRuntime(ctx, cfg, s.baseLog, s.now, passwords)
	if err != nil {
		return fmt.Errorf("reload: the running config stays in force: %w", err)
	}
	s.rt.Store(rt)
	if certs != nil {
		s.useCerts(certs)
	}
	s.retire(func() { old.close(s.log) })
	if len(restart) > 0 {
		s.log.Warn("config reloaded, but these sections only take effect after a restart", slog.Any("sections", restart))
	} else {
		s.log.Info("config reloaded", slog.Int("backends", len(cfg.Backends)), slog.Int("roles", len(cfg.Roles)), slog.Int("policies", len(cfg.Policies)),
			slog.Bool("tls_reloaded", certs != nil))
	}
	return nil
}

// retire runs close once the requests still using what it closes (backends
// a reload or a rotation replaced) have had pluginTimeout to finish, or at
// once when the server stops.
func (s *Server) retire(close func()) {
	s.retired.Go(func() {
		t := time.NewTimer(pluginTimeout)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.closing:
		}
		close()
	})
}
