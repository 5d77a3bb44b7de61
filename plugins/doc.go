// Package plugins owns the contract between the broker and a backend: the
// [Plugin] interface every backend implements, the [Driver] that parses a
// backend's configuration and opens it, and the types that cross the boundary
// ([CreateRequest], [Credential]).
//
// # Writing a backend
//
// A backend is one folder under plugins/ holding a Driver and a Plugin, plus one
// line where the binary lists its drivers. It proves itself with the
// conformance suite in plugins/plugintest, run against the real service.
//
// # Secrets
//
// Passwords travel as [secret.Value]. A backend's errors may quote SQL or a DSN,
// so everything a Plugin returns passes through [Sanitize] before it reaches a
// log or a client.
package plugins
