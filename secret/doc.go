// Package secret owns the types every secret in credbroker travels in.
//
// A [Value] holds a secret (an issued password, an admin DSN) and prints as
// [REDACTED] through every formatting path Go has: fmt verbs, log/slog, JSON and
// text marshalling. The only way to the plaintext is [Value.Reveal], so every place
// that needs it is easy to find and review.
//
// A [Ref] is how configuration names a secret without containing it: "env:NAME"
// or "file:/path". A Ref is checked for shape when parsed and resolved into a
// Value only when the server starts (and again on reload).
package secret
