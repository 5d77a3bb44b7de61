package secret

import (
	"fmt"
	"log/slog"
)

// Redacted is what a Value prints as, everywhere.
const Redacted = "[REDACTED]"

// Value is a secret string that never prints itself. The zero Value is empty.
type Value struct {
	s string
}

// New wraps s.
func New(s string) Value { return Value{s: s} }

// Reveal returns the plaintext. Call it only where the secret leaves the process
// on purpose: in a backend statement, in an API response.
func (v Value) Reveal() string { return v.s }

// IsZero reports whether v is empty.
func (v Value) IsZero() bool { return v.s == "" }

// String returns [Redacted].
func (v Value) String() string { return Redacted }

// GoString returns [Redacted], so %#v does not reveal v either.
func (v Value) GoString() string { return Redacted }

// Format prints [Redacted] for every verb.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue makes slog print [Redacted].
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON encodes v as the JSON string "[REDACTED]".
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes v as [Redacted] (used by YAML and text encoders).
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
