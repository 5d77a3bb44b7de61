package plugins

import (
	"bytes"
	"context"
	"fmt"

	"github.com/credbroker/credbroker/secret"
)

// Open opens a backend with d and wraps the plugin in the one sanitizing
// decorator: every error and warning the plugin returns has the plugin's
// secrets ([SecretHolder]), the request's password and anything shaped like a
// password in a DSN or SQL replaced by [secret.Redacted], and a State that is
// too large or holds the password is refused. The broker, the reaper and the
// conformance suite all open plugins through it, so no caller sanitizes a
// plugin's error again.
func Open(ctx context.Context, d Driver, connection any) (Plugin, error) {
	p, err := d.Open(ctx, connection)
	if err != nil {
		return nil, Sanitize(err)
	}
	return Sanitized(p), nil
}

// Sanitized returns p wrapped in the sanitizing decorator [Open] applies.
// Wrapping twice is harmless: an already sanitized plugin is returned as is.
// The decorator implements every optional interface ([Warner],
// [StateUpgrader], [Availability], [PasswordMaker]) whether p does or not,
// answering as "not supported" would (no warnings, no state, available,
// [NewPassword]), so a type assertion on the result cannot tell what p
// supports.
func Sanitized(p Plugin) Plugin {
	if s, ok := p.(*sanitizing); ok {
		return s
	}
	return &sanitizing{p: p}
}

// sanitizing is the decorator. It forwards the optional interfaces too.
type sanitizing struct{ p Plugin }

var (
	_ Plugin        = (*sanitizing)(nil)
	_ Warner        = (*sanitizing)(nil)
	_ StateUpgrader = (*sanitizing)(nil)
	_ Availability  = (*sanitizing)(nil)
	_ PasswordMaker = (*sanitizing)(nil)
)

func (s *sanitizing) clean(err error, extra ...secret.Value) error {
	if err == nil {
		return nil
	}
	if h, ok := s.p.(SecretHolder); ok {
		extra = append(extra, h.Secrets()...)
	}
	return Sanitize(err, extra...)
}

// checkState refuses a State the lease store must not keep.
func checkState(state []byte, password secret.Value) error {
	if len(state) > MaxStateSize {
		return fmt.Errorf("the plugin returned a state of %d bytes, more than the %d the lease store keeps", len(state), MaxStateSize)
	}
	if pw := password.Reveal(); pw != "" && bytes.Contains(state, []byte(pw)) {
		return fmt.Errorf("the plugin returned a state holding the password; a state must not be secret")
	}
	return nil
}

func (s *sanitizing) Create(ctx context.Context, req CreateRequest) (CreateResponse, error) {
	resp, err := s.p.Create(ctx, req)
	if err != nil {
		return CreateResponse{}, s.clean(err, req.Password)
	}
	if err := checkState(resp.State, req.Password); err != nil {
		return CreateResponse{}, err
	}
	return resp, nil
}

func (s *sanitizing) Renew(ctx context.Context, req RenewRequest) (RenewResponse, error) {
	resp, err := s.p.Renew(ctx, req)
	if err != nil {
		return RenewResponse{}, s.clean(err)
	}
	if err := checkState(resp.State, secret.Value{}); err != nil {
		return RenewResponse{}, err
	}
	return resp, nil
}

func (s *sanitizing) Revoke(ctx context.Context, req RevokeRequest) (RevokeResponse, error) {
	resp, err := s.p.Revoke(ctx, req)
	return resp, s.clean(err)
}

func (s *sanitizing) ListManaged(ctx context.Context) ([]ManagedUser, error) {
	users, err := s.p.ListManaged(ctx)
	return users, s.clean(err)
}

func (s *sanitizing) CheckRole(ctx context.Context, role any) error {
	return s.clean(s.p.CheckRole(ctx, role))
}

func (s *sanitizing) Check(ctx context.Context) error { return s.clean(s.p.Check(ctx)) }
func (s *sanitizing) Close() error                    { return s.clean(s.p.Close()) }

// Warnings returns the plugin's warnings, sanitized; none when the plugin
// is not a [Warner].
func (s *sanitizing) Warnings(ctx context.Context) []string {
	w, ok := s.p.(Warner)
	if !ok {
		return nil
	}
	var secrets []secret.Value
	if h, ok := s.p.(SecretHolder); ok {
		secrets = h.Secrets()
	}
	out := w.Warnings(ctx)
	for i := range out {
		out[i] = SanitizeString(out[i], secrets...)
	}
	return out
}

// UpgradeState forwards to the plugin's [StateUpgrader]; nil state and no
// error when it has none.
func (s *sanitizing) UpgradeState(ctx context.Context, req UpgradeStateRequest) ([]byte, error) {
	u, ok := s.p.(StateUpgrader)
	if !ok {
		return nil, nil
	}
	state, err := u.UpgradeState(ctx, req)
	if err != nil {
		return nil, s.clean(err)
	}
	return state, checkState(state, secret.Value{})
}

// Available forwards to the plugin's [Availability]; nil when it has none.
func (s *sanitizing) Available() error {
	a, ok := s.p.(Availability)
	if !ok {
		return nil
	}
	return s.clean(a.Available())
}

// NewPassword forwards to the plugin's [PasswordMaker]; [NewPassword] when
// it has none.
func (s *sanitizing) NewPassword() secret.Value { return NewPasswordFor(s.p) }

// NewPasswordFor returns a password for a user p is about to create: p's
// own when it is a [PasswordMaker], which may have prepared work for it,
// else [NewPassword].
func NewPasswordFor(p Plugin) secret.Value { return passwordFrom(p) }

// passwordFrom is [NewPasswordFor] for any plugin value, typed or not.
func passwordFrom(p any) secret.Value {
	if m, ok := p.(PasswordMaker); ok {
		return m.NewPassword()
	}
	return NewPassword()
}
