// Package sdk turns a credbroker backend into a program of its own, which
// the broker runs as a backend with `plugin: external`. A program's whole
// main is one call:
//
//	func main() { sdk.Serve(mqtt.New()) }
//
// The driver is the same [plugins.Driver] an in-tree backend exposes (usually
// [plugins.Typed] of a [plugins.TypedDriver]); nothing in it changes.
//
// # Protocol
//
// The program serves credbroker.plugin.v1.PluginService
// (proto/credbroker/plugin/v1) on the listening unix socket the broker hands
// it as file descriptor 3, with gRPC (HTTP/2 without TLS) or Connect. Serve
// refuses to run when [ProtocolEnv] does not hold [ProtocolCookie]: the
// program was not started by the broker. It exits when the broker closes the
// program's stdin (the broker is gone) or sends SIGTERM.
//
// Configuration sections arrive as YAML and are decoded strictly, as the
// broker decodes them: an unknown key is an error. Role specs are parsed once
// and kept by the SHA-256 of their YAML, so Create, Renew and Revoke do not
// parse the role again. The plugin is opened through [plugins.Open], so every
// error and warning leaving the program is sanitized of the plugin's secrets
// and of the request's password.
package sdk
