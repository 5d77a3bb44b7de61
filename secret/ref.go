package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrInline is returned by [ParseRef] for a value that is not a reference: a
// secret written straight into a config file.
var ErrInline = errors.New(`secrets must not be written inline: use "env:NAME" or "file:/path"`)

// Ref names where a secret lives: an environment variable ("env:NAME") or a file
// ("file:/path"). A Ref prints as its reference, never as the secret.
type Ref struct {
	kind string // "env" or "file"
	name string
}

// ParseRef parses "env:NAME" or "file:/path". Anything else is [ErrInline].
func ParseRef(s string) (Ref, error) {
	kind, name, ok := strings.Cut(s, ":")
	switch {
	case !ok || (kind != "env" && kind != "file"):
		return Ref{}, ErrInline
	case name == "":
		return Ref{}, fmt.Errorf("%s: reference names nothing: write %s:NAME", kind, kind)
	case kind == "file" && !strings.HasPrefix(name, "/"):
		return Ref{}, fmt.Errorf("file:%s: the path must be absolute", name)
	}
	return Ref{kind: kind, name: name}, nil
}

// EnvRef returns a Ref to the environment variable name.
func EnvRef(name string) Ref { return Ref{kind: "env", name: name} }

// IsZero reports whether r names nothing.
func (r Ref) IsZero() bool { return r.kind == "" }

// String returns the reference ("env:NAME"), which is safe to print.
func (r Ref) String() string {
	if r.IsZero() {
		return ""
	}
	return r.kind + ":" + r.name
}

// UnmarshalText parses a reference, so a Ref can sit in a decoded config struct.
func (r *Ref) UnmarshalText(b []byte) error {
	ref, err := ParseRef(string(b))
	if err != nil {
		return err
	}
	*r = ref
	return nil
}

// MarshalText encodes the reference.
func (r Ref) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// ResolveRaw reads the secret the reference names exactly as it is, without
// trimming a trailing newline: for binary key material, of which a last byte
// that is '\n' is part. Errors are those of [Ref.Resolve].
func (r Ref) ResolveRaw() (Value, error) {
	if r.kind != "file" {
		return r.Resolve()
	}
	b, err := os.ReadFile(r.name)
	if err != nil {
		return Value{}, fmt.Errorf("%s: %w", r, errors.Unwrap(err))
	}
	if len(b) == 0 {
		return Value{}, fmt.Errorf("%s: the file is empty", r)
	}
	return New(string(b)), nil
}

// Resolve reads the secret the reference names. A missing variable, an empty
// value or an unreadable file is an error that names the reference.
func (r Ref) Resolve() (Value, error) {
	switch r.kind {
	case "env":
		v, ok := os.LookupEnv(r.name)
		if !ok || v == "" {
			return Value{}, fmt.Errorf("%s: environment variable %s is not set", r, r.name)
		}
		return New(v), nil
	case "file":
		b, err := os.ReadFile(r.name)
		if err != nil {
			return Value{}, fmt.Errorf("%s: %w", r, errors.Unwrap(err))
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return Value{}, fmt.Errorf("%s: the file is empty", r)
		}
		return New(v), nil
	default:
		return Value{}, errors.New("no secret reference given")
	}
}
