package plugins_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// rotating is a recorder that can rotate its admin password.
type rotating struct{ *recorder }

func (rotating) RotateRoot(context.Context, plugins.RotateRootRequest) (plugins.RotateRootResponse, error) {
	return plugins.RotateRootResponse{}, errors.New("ALTER ROLE x PASSWORD 'n3w-s3cret' failed")
}

type rotatingDriver struct{ driver }

func (d rotatingDriver) Open(_ context.Context, conn string) (plugins.TypedPlugin[*role], error) {
	return rotating{d.p}, nil
}

func TestRootRotator(t *testing.T) {
	t.Parallel()
	plain := open(t, &recorder{admin: secret.New("adm1n")})
	if plugins.CanRotateRoot(plain) {
		t.Fatal("a plugin without RotateRoot reports that it can rotate (the decorator has the method)")
	}
	if _, err := plain.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: secret.New("x")}); !errors.Is(err, plugins.ErrRotateUnsupported) {
		t.Fatalf("RotateRoot of a plugin that cannot: %v", err)
	}
	if _, err := plugins.OpenAs(t.Context(), plugins.Typed(driver{&recorder{}}), "conn", secret.New("pw")); !errors.Is(err, plugins.ErrRotateUnsupported) {
		t.Fatalf("OpenAs with a driver that cannot take a password: %v", err)
	}
	p, err := plugins.Open(t.Context(), plugins.Typed(rotatingDriver{driver{&recorder{admin: secret.New("adm1n")}}}), "conn")
	if err != nil {
		t.Fatal(err)
	}
	if !plugins.CanRotateRoot(p) {
		t.Fatal("a RootRotator under the decorator is not seen")
	}
	_, err = p.(plugins.RootRotator).RotateRoot(t.Context(), plugins.RotateRootRequest{NewPassword: secret.New("n3w-s3cret")})
	if err == nil || contains(err.Error(), "n3w-s3cret") {
		t.Fatalf("RotateRoot error %v: want an error without the new password", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
