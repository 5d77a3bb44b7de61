package plugins

import (
	"context"
	"errors"

	"github.com/credbroker/credbroker/secret"
)

// ErrRotateUnsupported means a plugin (or its driver) cannot rotate its
// admin password: it implements no [RootRotator] (or [AdminPassworder]).
var ErrRotateUnsupported = errors.New("the plugin cannot rotate its admin password")

// ErrRotateRefused wraps an error of [RootRotator.RotateRoot] that refused
// the rotation before it changed anything on the backend, for a reason a
// retry does not cure (the admin is Redis's default user, a node keeps no
// ACL file): the broker rolls such a rotation back at once instead of
// trying it again.
var ErrRotateRefused = errors.New("rotation refused")

// RootRotator is implemented by a Plugin that can change the password of
// its own admin user on the backend (root rotation). The broker generates
// the new password, records it encrypted before it calls RotateRoot, and
// from then on opens the backend with it through [AdminPassworder]. The
// plugin's open connections keep working; the broker reopens the plugin
// with the new password once RotateRoot returns. RotateRoot changes nothing
// when it returns an error the backend did not act on; an error after the
// backend may have acted (a timeout) is resolved by the broker, which tries
// both passwords.
type RootRotator interface {
	RotateRoot(ctx context.Context, req RotateRootRequest) (RotateRootResponse, error)
}

// RotateRootRequest is what [RootRotator.RotateRoot] sets.
type RotateRootRequest struct {
	// NewPassword is the admin's new password, from [NewPassword]. It may
	// be the password the plugin logged in with ([AdminPasswordOf]): the
	// broker's recovery of an abandoned rotation sets the password it
	// settles on again, so that a change of a dead broker's still on its
	// way to the backend is ordered before it. The plugin then makes the
	// backend's state what a finished rotation to it leaves (the password
	// set, and kept across a restart where the backend needs saving).
	NewPassword secret.Value
	// Retire is a password the admin may still have beside NewPassword on
	// a backend that keeps several per user (Redis): an earlier one, which
	// a rotation abandoned after it added the new one left behind. The
	// plugin takes it away where the user has it. Zero when there is none;
	// backends with one password per user ignore it.
	Retire secret.Value
}

// AdminPassworded is implemented by a Plugin that can tell which admin
// password it logged in with: the config's reference's, or the one
// [OpenAs] gave it. The broker sets it again when it rolls an abandoned
// rotation back to the config's password, which it does not hold itself.
type AdminPassworded interface {
	AdminPassword() secret.Value
}

// AdminPasswordOf returns the admin password p (as [Open] or [OpenAs]
// returned it) logged in with; false when its plugin cannot tell.
func AdminPasswordOf(p Plugin) (secret.Value, bool) {
	switch v := p.(type) {
	case *sanitizing:
		return AdminPasswordOf(v.p)
	case interface{ adminPassword() (secret.Value, bool) }:
		return v.adminPassword()
	case AdminPassworded:
		pw := v.AdminPassword()
		return pw, !pw.IsZero()
	}
	return secret.Value{}, false
}

func (t *typedPlugin[R]) adminPassword() (secret.Value, bool) {
	a, ok := t.p.(AdminPassworded)
	if !ok {
		return secret.Value{}, false
	}
	pw := a.AdminPassword()
	return pw, !pw.IsZero()
}

// RotateRootResponse is what RotateRoot returns; empty today.
type RotateRootResponse struct{}

// AdminPassworder is implemented by a Driver whose backends can be opened
// with an admin password in place of the one the connection's reference
// names: the one the broker rotated and keeps, encrypted, in its store.
// WithAdminPassword returns a copy of connection (a value ParseConnection
// returned) that [Driver.Open] opens with password.
type AdminPassworder interface {
	WithAdminPassword(connection any, password secret.Value) (any, error)
}

// TypedAdminPassworder is [AdminPassworder] in the backend's own connection
// type; [Typed] forwards to it.
type TypedAdminPassworder[C any] interface {
	WithAdminPassword(connection C, password secret.Value) (C, error)
}

// CopyWithAdminPassword is the body of a [TypedAdminPassworder]: a copy of
// *c with set applied (which puts password where the driver's Open looks
// for it), refusing a nil connection or an empty password.
func CopyWithAdminPassword[C any](c *C, password secret.Value, set func(*C)) (*C, error) {
	if c == nil {
		return nil, errors.New("open: no connection given")
	}
	if password.IsZero() {
		return nil, errors.New("open: the admin password is empty")
	}
	cp := *c
	set(&cp)
	return &cp, nil
}

// OpenAs is [Open] with the admin password replaced by password; with a
// zero password it is Open. A driver that is no [AdminPassworder] is
// [ErrRotateUnsupported]. No error holds password.
func OpenAs(ctx context.Context, d Driver, connection any, password secret.Value) (Plugin, error) {
	if password.IsZero() {
		return Open(ctx, d, connection)
	}
	a, ok := d.(AdminPassworder)
	if !ok {
		return nil, ErrRotateUnsupported
	}
	c, err := a.WithAdminPassword(connection, password)
	if err != nil {
		return nil, Sanitize(err, password)
	}
	p, err := d.Open(ctx, c)
	if err != nil {
		return nil, Sanitize(err, password)
	}
	return Sanitized(p), nil
}

// RotateRoot forwards to the plugin's [RootRotator];
// [ErrRotateUnsupported] when it has none. The new password is redacted
// from the error.
func (s *sanitizing) RotateRoot(ctx context.Context, req RotateRootRequest) (RotateRootResponse, error) {
	r, ok := s.p.(RootRotator)
	if !ok {
		return RotateRootResponse{}, ErrRotateUnsupported
	}
	resp, err := r.RotateRoot(ctx, req)
	return resp, s.clean(err, req.NewPassword, req.Retire)
}

func (t *typedPlugin[R]) RotateRoot(ctx context.Context, req RotateRootRequest) (RotateRootResponse, error) {
	r, ok := t.p.(RootRotator)
	if !ok {
		return RotateRootResponse{}, ErrRotateUnsupported
	}
	return r.RotateRoot(ctx, req)
}

func (t typedDriver[C, R]) WithAdminPassword(connection any, password secret.Value) (any, error) {
	a, ok := t.d.(TypedAdminPassworder[C])
	if !ok {
		return nil, ErrRotateUnsupported
	}
	c, ok := connection.(C)
	if !ok {
		return nil, errors.New(t.d.Name() + ": connection is not this driver's")
	}
	return a.WithAdminPassword(c, password)
}

var (
	_ RootRotator     = (*sanitizing)(nil)
	_ AdminPassworder = typedDriver[any, any]{}
)

// CanRotateRoot reports whether p, as [Open] returned it, can rotate its
// admin password: whether the plugin under the decorator (and under
// [Typed]) is a [RootRotator]. The decorator itself always has the method.
func CanRotateRoot(p Plugin) bool {
	switch v := p.(type) {
	case *sanitizing:
		return CanRotateRoot(v.p)
	case interface{ canRotateRoot() bool }:
		return v.canRotateRoot()
	}
	_, ok := p.(RootRotator)
	return ok
}

func (t *typedPlugin[R]) canRotateRoot() bool {
	_, ok := t.p.(RootRotator)
	return ok
}
