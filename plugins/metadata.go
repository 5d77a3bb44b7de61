package plugins

import "context"

// Describer is implemented by a driver that declares more than the contract
// needs: the backend's own command-line clients for `credbroker connect`, a
// demo backend for `credbroker dev`, the names of its credential's
// variables. It is what lets a new backend be one folder plus one line: no
// file outside the plugin's folder names a plugin.
type Describer interface {
	Describe() Metadata
}

// Metadata is what a driver declares about itself. Every field is optional.
type Metadata struct {
	// Clients are the backend's own command-line clients, in order of
	// preference; `credbroker connect` opens the first one found on PATH.
	Clients []Client
	// Shell makes `credbroker connect` open the user's shell ($SHELL) with
	// the credential's variables in its environment when none of Clients
	// is on PATH: for a backend with no command-line client that logs in
	// from those variables.
	Shell bool
	// Demo is the demo backend `credbroker dev` adds when its service
	// answers on this machine.
	Demo *Demo
	// Env names the variables the plugin's [Credential.Env] holds, in the
	// order they are best shown (PGHOST, PGPORT …).
	Env []string
}

// Client is one command-line client of a backend.
type Client struct {
	// Command is the program's name, looked up on PATH (psql, redis-cli).
	Command string
	// Args returns the program's arguments for a credential, from its Env
	// (which `credbroker connect` also puts in the program's environment).
	// The arguments a user writes after `--` are appended. Nil: no
	// arguments.
	Args func(env map[string]string) []string
	// Files returns small files the program reads its options from, by
	// name, for a client that takes the password only on its command line
	// (where every user of the machine sees it in ps) or from a file.
	// `credbroker connect` writes them into a private directory (0700, files
	// 0600), points XDG_CONFIG_HOME at it for the program, and removes it
	// when the program ends. Nil: no files.
	Files func(env map[string]string) map[string]string
}

// Demo is a demo backend for `credbroker dev`.
type Demo struct {
	// Prepare checks that the demo service answers on this machine and makes
	// what the demo role needs (a database, a vhost). It returns an error
	// saying what is missing when the service does not answer.
	Prepare func(ctx context.Context) (DemoBackend, error)
}

// DemoBackend is a prepared demo backend, ready to be written into the
// config `credbroker dev` generates as backend demo-<plugin> and role
// demo-<plugin>.
type DemoBackend struct {
	// Connection is the backend's `connection:` section as a YAML flow
	// mapping, e.g. `{addr: "127.0.0.1:6379"}`. Secrets in it are
	// references (env:NAME) to the variables in Env.
	Connection string
	// Role is the demo role's plugin section as a YAML flow mapping.
	Role string
	// Env are variables `credbroker dev` sets in its own environment before
	// it loads the config: the secrets Connection refers to.
	Env map[string]string
	// Try is a shell line for the banner that shows the demo role working.
	Try string
}
