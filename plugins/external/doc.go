// Package external is the broker's side of backends run as separate
// programs (`plugin: external`): a [Driver] per configured backend that
// starts the backend's program, talks to it over
// credbroker.plugin.v1.PluginService (proto/credbroker/plugin/v1) and looks
// to the rest of the broker like any other [plugins.Driver]. The program's
// side is package plugins/sdk, or any gRPC server in another language;
// docs/plugins.md describes both.
//
// # Starting a program
//
// Before every start the executable is hashed, and a SHA-256 other than the
// configured one refuses the start ([ChecksumError]). The broker listens on
// a unix socket (mode 0600) in a directory of its own (mode 0700) and starts
// the program with that listener as file descriptor 3, a pipe as stdin, and
// an environment of the backend's resolved `env:` plus the two protocol
// variables, nothing else of the broker's. Each line of the program's
// output goes to the broker's log, sanitized. A handshake then agrees on a
// protocol version ([ProtocolError] when there is none) and tells the
// program's name, username limit and credential variables. On Linux the
// broker makes itself non-dumpable before its first program starts, so a
// program running as the same user cannot read the broker's environment or
// memory through /proc.
//
// # Instances
//
// ParseConnection and ParseRole go to a short-lived validation instance,
// which gets none of the env and stops when idle or at [Driver.Close]:
// `credbroker config check` runs the program too. Open starts the
// long-running instance and supervises it: if the program dies, every call
// answers at once with an error matching [plugins.ErrUnavailable], so the
// broker fails closed for this backend only, and the program is started
// again with capped exponential backoff (hash, handshake and Open again).
// Close stops it with SIGTERM, then SIGKILL, and removes the socket's
// directory.
package external
