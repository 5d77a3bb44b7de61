package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// role is the spec type of the test driver.
type role struct{ Grant string }

// recorder is a TypedPlugin that records what the adapter hands it and
// answers with what the test sets: the decorator and the adapter are the
// code under test, not a backend.
type recorder struct {
	admin   secret.Value
	err     error
	state   []byte
	warning string

	create  plugins.CreateOf[*role]
	revoke  plugins.RevokeOf[*role]
	renew   plugins.RenewOf[*role]
	checked *role
}

func (r *recorder) Create(_ context.Context, req plugins.CreateOf[*role]) (plugins.CreateResponse, error) {
	r.create = req
	return plugins.CreateResponse{Credential: plugins.Credential{Username: req.Username, Password: req.Password}, State: r.state}, r.err
}
func (r *recorder) Renew(_ context.Context, req plugins.RenewOf[*role]) (plugins.RenewResponse, error) {
	r.renew = req
	return plugins.RenewResponse{State: r.state}, r.err
}
func (r *recorder) Revoke(_ context.Context, req plugins.RevokeOf[*role]) (plugins.RevokeResponse, error) {
	r.revoke = req
	return plugins.RevokeResponse{}, r.err
}
func (r *recorder) ListManaged(context.Context) ([]plugins.ManagedUser, error) { return nil, r.err }
func (r *recorder) CheckRole(_ context.Context, spec *role) error {
	r.checked = spec
	return r.err
}
func (r *recorder) Check(context.Context) error       { return r.err }
func (r *recorder) Close() error                      { return nil }
func (r *recorder) Secrets() []secret.Value           { return []secret.Value{r.admin} }
func (r *recorder) Warnings(context.Context) []string { return []string{r.warning} }
func (r *recorder) UpgradeState(_ context.Context, req plugins.UpgradeStateOf[*role]) ([]byte, error) {
	return []byte("derived for " + req.Username), r.err
}

type driver struct{ p *recorder }

func (driver) Name() string       { return "recorder" }
func (driver) UsernameLimit() int { return 32 }
func (driver) ParseConnection(plugins.Decoder) (string, error) {
	return "conn", nil
}
func (driver) ParseRole(plugins.Decoder) (*role, []string, error) {
	return &role{Grant: "read"}, nil, nil
}
func (d driver) Open(_ context.Context, conn string) (plugins.TypedPlugin[*role], error) {
	if conn != "conn" {
		return nil, fmt.Errorf("opened with %q", conn)
	}
	return d.p, nil
}

func open(t *testing.T, rec *recorder) plugins.Plugin {
	t.Helper()
	p, err := plugins.Open(t.Context(), plugins.Typed(driver{rec}), "conn")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTyped: the adapter hands a plugin its own types, passes a missing
// spec (a role gone from the config) as nil, and refuses a spec of another
// type with an error instead of a panic.
func TestTyped(t *testing.T) {
	rec := &recorder{}
	p := open(t, rec)
	ctx := t.Context()
	spec := &role{Grant: "read"}
	if _, err := p.Create(ctx, plugins.CreateRequest{Username: "cb_x", Role: "r", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if rec.create.Spec != spec || rec.create.Role != "r" || rec.create.Username != "cb_x" {
		t.Errorf("Create got %+v", rec.create)
	}
	if _, err := p.Revoke(ctx, plugins.RevokeRequest{Username: "cb_x", Role: "gone", State: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	if rec.revoke.Spec != nil || string(rec.revoke.State) != "s" || rec.revoke.Role != "gone" {
		t.Errorf("Revoke without a spec got %+v", rec.revoke)
	}
	if _, err := p.Renew(ctx, plugins.RenewRequest{Username: "cb_x", Spec: spec, State: []byte("s")}); err != nil || rec.renew.Spec != spec {
		t.Errorf("Renew: %v, got %+v", err, rec.renew)
	}
	if err := p.CheckRole(ctx, spec); err != nil || rec.checked != spec {
		t.Errorf("CheckRole: %v, got %v", err, rec.checked)
	}
	for name, call := range map[string]func() error{
		"Create":    func() error { _, err := p.Create(ctx, plugins.CreateRequest{Spec: struct{}{}}); return err },
		"CreateNil": func() error { _, err := p.Create(ctx, plugins.CreateRequest{}); return err },
		"Revoke":    func() error { _, err := p.Revoke(ctx, plugins.RevokeRequest{Spec: "x"}); return err },
		"CheckRole": func() error { return p.CheckRole(ctx, role{}) },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "recorder:") {
			t.Errorf("%s with a spec of the wrong type: %v, want an error naming the plugin", name, err)
		}
	}
	if _, err := plugins.Open(ctx, plugins.Typed(driver{rec}), 42); err == nil {
		t.Error("Open with a connection of the wrong type succeeded")
	}
	u, ok := p.(plugins.StateUpgrader)
	if !ok {
		t.Fatal("the opened plugin does not forward UpgradeState")
	}
	if st, err := u.UpgradeState(ctx, plugins.UpgradeStateRequest{Username: "cb_old"}); err != nil || string(st) != "derived for cb_old" {
		t.Errorf("UpgradeState = %q, %v", st, err)
	}
}

// TestSanitizingDecorator: whatever a plugin says in an error or warning has
// its admin secret, the request's password and DSN-shaped passwords
// redacted, and a state the store must not keep is refused.
func TestSanitizingDecorator(t *testing.T) {
	ctx := t.Context()
	admin := secret.New("admin-Secret-1")
	password := secret.New("issued-Secret-2")
	rec := &recorder{admin: admin}
	p := open(t, rec)
	if plugins.Sanitized(p) != p {
		t.Error("wrapping twice made a second decorator")
	}

	rec.err = fmt.Errorf("%w: dial postgres://admin:%s@db:5432 failed for password %s", plugins.ErrUnavailable, admin.Reveal(), password.Reveal())
	_, err := p.Create(ctx, plugins.CreateRequest{Username: "cb_x", Password: password, Spec: &role{}})
	if err == nil || strings.Contains(err.Error(), admin.Reveal()) || strings.Contains(err.Error(), password.Reveal()) {
		t.Errorf("Create error = %v: a secret got through", err)
	}
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("the redacted error no longer matches ErrUnavailable: %v", err)
	}
	for name, call := range map[string]func() error{
		"Revoke":      func() error { _, err := p.Revoke(ctx, plugins.RevokeRequest{Username: "cb_x"}); return err },
		"Renew":       func() error { _, err := p.Renew(ctx, plugins.RenewRequest{Username: "cb_x"}); return err },
		"ListManaged": func() error { _, err := p.ListManaged(ctx); return err },
		"Check":       func() error { return p.Check(ctx) },
		"CheckRole":   func() error { return p.CheckRole(ctx, &role{}) },
	} {
		if err := call(); err == nil || strings.Contains(err.Error(), admin.Reveal()) {
			t.Errorf("%s error = %v: the admin secret got through", name, err)
		}
	}
	rec.err = nil

	rec.warning = "the admin " + admin.Reveal() + " is a superuser"
	w := p.(plugins.Warner).Warnings(ctx)
	if len(w) != 1 || strings.Contains(w[0], admin.Reveal()) {
		t.Errorf("Warnings = %q: the admin secret got through", w)
	}

	rec.state = []byte(`{"note":"` + password.Reveal() + `"}`)
	if _, err := p.Create(ctx, plugins.CreateRequest{Username: "cb_x", Password: password, Spec: &role{}}); err == nil || strings.Contains(err.Error(), password.Reveal()) {
		t.Errorf("a state holding the password: Create = %v, want refused without quoting it", err)
	}
	rec.state = make([]byte, plugins.MaxStateSize+1)
	if _, err := p.Create(ctx, plugins.CreateRequest{Username: "cb_x", Password: password, Spec: &role{}}); err == nil {
		t.Error("a state over MaxStateSize was accepted by Create")
	}
	if _, err := p.Renew(ctx, plugins.RenewRequest{Username: "cb_x"}); err == nil {
		t.Error("a state over MaxStateSize was accepted by Renew")
	}
	rec.state = []byte(`{"v":1}`)
	resp, err := p.Create(ctx, plugins.CreateRequest{Username: "cb_x", Password: password, Spec: &role{}})
	if err != nil || string(resp.State) != `{"v":1}` || resp.Credential.Username != "cb_x" {
		t.Errorf("Create = %+v, %v", resp, err)
	}
}

// maker is a recorder that makes the passwords of its users.
type maker struct {
	*recorder
	password secret.Value
}

func (m maker) NewPassword() secret.Value { return m.password }

// makerDriver opens a maker.
type makerDriver struct {
	driver
	m maker
}

func (d makerDriver) Open(context.Context, string) (plugins.TypedPlugin[*role], error) {
	return d.m, nil
}

// TestNewPasswordFor: the passwords of a plugin that makes its own come from
// it, through the adapter and the decorator; a plugin that does not gets
// NewPassword's.
func TestNewPasswordFor(t *testing.T) {
	made := secret.New("made-by-the-plugin")
	p, err := plugins.Open(t.Context(), plugins.Typed(makerDriver{m: maker{recorder: &recorder{}, password: made}}), "conn")
	if err != nil {
		t.Fatal(err)
	}
	if got := plugins.NewPasswordFor(p); got.Reveal() != made.Reveal() {
		t.Errorf("NewPasswordFor a plugin that makes passwords = %q, want its own", got.Reveal())
	}

	plain := open(t, &recorder{})
	first, second := plugins.NewPasswordFor(plain).Reveal(), plugins.NewPasswordFor(plain).Reveal()
	if len(first) != 32 || first == second || first == made.Reveal() {
		t.Errorf("NewPasswordFor a plugin that makes none = %q then %q, want two of NewPassword's", first, second)
	}
	if _, ok := plain.(plugins.PasswordMaker); !ok {
		t.Error("the decorator does not implement PasswordMaker for a plugin without one")
	}
}
