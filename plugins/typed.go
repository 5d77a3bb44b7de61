package plugins

import (
	"context"
	"fmt"

	"github.com/credbroker/credbroker/secret"
)

// TypedDriver is a [Driver] written in the backend's own types: C is what
// ParseConnection returns, R what ParseRole returns (a pointer type, so that
// "the role is gone" is nil). [Typed] turns it into a Driver and does the
// one type assertion, so no plugin method takes or casts `any`.
type TypedDriver[C, R any] interface {
	Name() string
	UsernameLimit() int
	ParseConnection(decode Decoder) (C, error)
	ParseRole(decode Decoder) (role R, warnings []string, err error)
	Open(ctx context.Context, connection C) (TypedPlugin[R], error)
}

// TypedPlugin is a [Plugin] written in the backend's own role type R. It may
// also implement [Warner], [SecretHolder], [PasswordMaker] and
// [TypedStateUpgrader].
type TypedPlugin[R any] interface {
	Create(ctx context.Context, req CreateOf[R]) (CreateResponse, error)
	Renew(ctx context.Context, req RenewOf[R]) (RenewResponse, error)
	Revoke(ctx context.Context, req RevokeOf[R]) (RevokeResponse, error)
	ListManaged(ctx context.Context) ([]ManagedUser, error)
	CheckRole(ctx context.Context, role R) error
	Check(ctx context.Context) error
	Close() error
}

// TypedStateUpgrader is [StateUpgrader] in the backend's own role type.
type TypedStateUpgrader[R any] interface {
	UpgradeState(ctx context.Context, req UpgradeStateOf[R]) ([]byte, error)
}

// Typed returns the Driver for d. The Driver also carries d's [Metadata]
// when d implements [Describer].
func Typed[C, R any](d TypedDriver[C, R]) Driver {
	if _, ok := any(d).(Describer); ok {
		return describedDriver[C, R]{typedDriver[C, R]{d}}
	}
	return typedDriver[C, R]{d}
}

type typedDriver[C, R any] struct{ d TypedDriver[C, R] }

type describedDriver[C, R any] struct{ typedDriver[C, R] }

func (t describedDriver[C, R]) Describe() Metadata { return any(t.d).(Describer).Describe() }

func (t typedDriver[C, R]) Name() string       { return t.d.Name() }
func (t typedDriver[C, R]) UsernameLimit() int { return t.d.UsernameLimit() }

func (t typedDriver[C, R]) ParseConnection(decode Decoder) (any, error) {
	c, err := t.d.ParseConnection(decode)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (t typedDriver[C, R]) ParseRole(decode Decoder) (any, []string, error) {
	r, w, err := t.d.ParseRole(decode)
	if err != nil {
		return nil, w, err
	}
	return r, w, nil
}

func (t typedDriver[C, R]) Open(ctx context.Context, connection any) (Plugin, error) {
	c, ok := connection.(C)
	if !ok {
		var want C
		return nil, fmt.Errorf("%s: open: connection is %T, want %T from ParseConnection", t.d.Name(), connection, want)
	}
	p, err := t.d.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	return &typedPlugin[R]{name: t.d.Name(), p: p}, nil
}

// typedPlugin adapts a TypedPlugin to Plugin.
type typedPlugin[R any] struct {
	name string
	p    TypedPlugin[R]
}

// spec converts a role spec to R. nil is R's zero value when optional.
func (t *typedPlugin[R]) spec(v any, optional bool) (R, error) {
	var zero R
	if v == nil {
		if optional {
			return zero, nil
		}
		return zero, fmt.Errorf("%s: no role spec given", t.name)
	}
	r, ok := v.(R)
	if !ok {
		return zero, fmt.Errorf("%s: role spec is %T, want %T from ParseRole", t.name, v, zero)
	}
	return r, nil
}

func (t *typedPlugin[R]) Create(ctx context.Context, req CreateRequest) (CreateResponse, error) {
	spec, err := t.spec(req.Spec, false)
	if err != nil {
		return CreateResponse{}, err
	}
	return t.p.Create(ctx, CreateOf[R]{Username: req.Username, Password: req.Password, ExpiresAt: req.ExpiresAt, Role: req.Role, Spec: spec})
}

func (t *typedPlugin[R]) Renew(ctx context.Context, req RenewRequest) (RenewResponse, error) {
	spec, err := t.spec(req.Spec, true)
	if err != nil {
		return RenewResponse{}, err
	}
	return t.p.Renew(ctx, RenewOf[R]{Username: req.Username, Role: req.Role, Spec: spec, State: req.State, ExpiresAt: req.ExpiresAt})
}

func (t *typedPlugin[R]) Revoke(ctx context.Context, req RevokeRequest) (RevokeResponse, error) {
	spec, err := t.spec(req.Spec, true)
	if err != nil {
		return RevokeResponse{}, err
	}
	return t.p.Revoke(ctx, RevokeOf[R]{Username: req.Username, Role: req.Role, Spec: spec, State: req.State})
}

func (t *typedPlugin[R]) ListManaged(ctx context.Context) ([]ManagedUser, error) {
	return t.p.ListManaged(ctx)
}

func (t *typedPlugin[R]) CheckRole(ctx context.Context, role any) error {
	spec, err := t.spec(role, false)
	if err != nil {
		return err
	}
	return t.p.CheckRole(ctx, spec)
}

func (t *typedPlugin[R]) Check(ctx context.Context) error { return t.p.Check(ctx) }
func (t *typedPlugin[R]) Close() error                    { return t.p.Close() }

func (t *typedPlugin[R]) Warnings(ctx context.Context) []string {
	if w, ok := t.p.(Warner); ok {
		return w.Warnings(ctx)
	}
	return nil
}

func (t *typedPlugin[R]) Secrets() []secret.Value {
	if s, ok := t.p.(SecretHolder); ok {
		return s.Secrets()
	}
	return nil
}

func (t *typedPlugin[R]) NewPassword() secret.Value { return passwordFrom(t.p) }

func (t *typedPlugin[R]) UpgradeState(ctx context.Context, req UpgradeStateRequest) ([]byte, error) {
	u, ok := t.p.(TypedStateUpgrader[R])
	if !ok {
		return nil, nil
	}
	spec, err := t.spec(req.Spec, true)
	if err != nil {
		return nil, err
	}
	return u.UpgradeState(ctx, UpgradeStateOf[R]{Username: req.Username, Role: req.Role, Spec: spec})
}
