package secret_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/secret"
)

const plain = "hunter2-correct-horse"

func TestValueNeverPrints(t *testing.T) {
	t.Parallel()
	v := secret.New(plain)
	wrapped := struct {
		Password secret.Value
		Ptr      *secret.Value
	}{v, &v}

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", slog.Any("v", v), slog.Any("wrapped", wrapped))
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "v", v, "wrapped", wrapped)
	js, err := json.Marshal(wrapped)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":    fmt.Sprintf("%v", v),
		"%s":    fmt.Sprintf("%s", v),
		"%q":    fmt.Sprintf("%q", v),
		"%x":    fmt.Sprintf("%x", v),
		"%#v":   fmt.Sprintf("%#v", v),
		"%+v":   fmt.Sprintf("%+v", wrapped),
		"%#vS":  fmt.Sprintf("%#v", wrapped),
		"error": fmt.Errorf("connect with %v: %w", v, errors.New("boom")).Error(),
		"json":  string(js),
		"slog":  logs.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, plain) {
			t.Errorf("%s reveals the secret: %s", name, out)
		}
		if !strings.Contains(out, secret.Redacted) {
			t.Errorf("%s does not say %s: %s", name, secret.Redacted, out)
		}
	}
	if v.Reveal() != plain {
		t.Errorf("Reveal = %q", v.Reveal())
	}
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in, want string
		inline   bool
		bad      bool
	}{
		"Env":          {in: "env:DB_DSN", want: "env:DB_DSN"},
		"File":         {in: "file:/run/secrets/dsn", want: "file:/run/secrets/dsn"},
		"Inline":       {in: "postgres://u:p@h/db", inline: true},
		"Plain":        {in: "hunter2", inline: true},
		"Empty":        {in: "", inline: true},
		"OtherScheme":  {in: "vault:secret/db", inline: true},
		"EnvNoName":    {in: "env:", bad: true},
		"RelativeFile": {in: "file:secrets/dsn", bad: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := secret.ParseRef(tc.in)
			switch {
			case tc.inline:
				if !errors.Is(err, secret.ErrInline) {
					t.Fatalf("err = %v, want ErrInline", err)
				}
				if strings.Contains(err.Error(), tc.in) && tc.in != "" {
					t.Errorf("error quotes the inline value: %v", err)
				}
			case tc.bad:
				if err == nil {
					t.Fatal("accepted")
				}
			default:
				if err != nil || r.String() != tc.want {
					t.Fatalf("ParseRef = %v, %v", r, err)
				}
			}
		})
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "dsn")
	if err := os.WriteFile(file, []byte(plain+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDBROKER_TEST_SECRET", plain)
	for _, ref := range []string{"env:CREDBROKER_TEST_SECRET", "file:" + file} {
		r, err := secret.ParseRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		v, err := r.Resolve()
		if err != nil || v.Reveal() != plain {
			t.Errorf("Resolve(%s) = %v, %v", ref, v.Reveal() == plain, err)
		}
	}
	for _, ref := range []string{"env:CREDBROKER_TEST_UNSET_VARIABLE", "file:" + filepath.Join(dir, "missing")} {
		r, _ := secret.ParseRef(ref)
		if _, err := r.Resolve(); err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("Resolve(%s) error %v should name the reference", ref, err)
		}
	}
}
