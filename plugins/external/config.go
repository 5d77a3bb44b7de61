package external

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/credbroker/credbroker/plugins/sdk"
	"github.com/credbroker/credbroker/secret"
)

// Config is one backend run as a separate program. Zero durations take the
// defaults shown.
type Config struct {
	// Name is the backend's name in the broker's config; it names the
	// program in logs and errors.
	Name string
	// Command is the program and its arguments. Command[0] is an absolute
	// path, run as is: no shell, no PATH lookup.
	Command []string
	// SHA256 is the hex SHA-256 of the file Command[0]; required. Before
	// every start the file is opened once, checked and hashed through that
	// descriptor, and on Linux the open file itself is run
	// (/proc/self/fd/N), so what runs is what was hashed. A hash that
	// differs is refused with a [*ChecksumError]; a file that is not owned
	// by root or the broker's user, or that it or its directory is
	// writable by group or others, with an [*UnsafeProgramError].
	SHA256 string
	// Env are the variables the program gets, each a secret reference that
	// the broker resolves when it starts the program for [Driver.Open] (never
	// for validation, which gets none). The program gets nothing else of the
	// broker's environment, not even PATH (write `PATH: env:PATH` to pass
	// it). The resolved values are treated as secrets: they are redacted from
	// the program's errors, warnings and output.
	Env map[string]secret.Ref
	// Logger receives the program's output, a record a line, and the
	// supervisor's events. Default: none; see [Driver.SetLogger].
	Logger *slog.Logger
	// StartTimeout bounds one start: hashing the executable, starting it and
	// the handshake; default 10s. Open's own call to the backend is bounded
	// by Open's context.
	StartTimeout time.Duration
	// CallTimeout bounds ParseConnection and ParseRole, which take no
	// context; default 30s.
	CallTimeout time.Duration
	// StopTimeout is how long the program has to exit after SIGTERM before
	// it is killed; default 5s.
	StopTimeout time.Duration
	// RestartMin and RestartMax are the first and the longest pause before a
	// program that died is started again; defaults 100ms and 30s. The pause
	// doubles after every start that fails or dies early, and starts over
	// once the program ran for RestartMax.
	RestartMin, RestartMax time.Duration
	// IdleTimeout is how long the instance that validates configuration
	// stays up unused before it is stopped; default 10s. [Driver.Close]
	// stops it at once.
	IdleTimeout time.Duration
	// SocketDir is where the private directory of each program's socket is
	// made; default os.TempDir(). A unix socket's path holds at most 104
	// bytes on some systems, so it should be short.
	SocketDir string
}

func (c *Config) setDefaults() {
	c.StartTimeout = cmp.Or(c.StartTimeout, 10*time.Second)
	c.CallTimeout = cmp.Or(c.CallTimeout, 30*time.Second)
	c.StopTimeout = cmp.Or(c.StopTimeout, 5*time.Second)
	c.RestartMin = cmp.Or(c.RestartMin, 100*time.Millisecond)
	c.RestartMax = cmp.Or(c.RestartMax, 30*time.Second)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, 10*time.Second)
}

// FieldError is a problem with one field of a [Config], named as in the
// broker's config file (command, sha256, env.NAME).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// envName is what a variable's name may be.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnvPrefix starts the variables the broker itself sets.
const reservedEnvPrefix = "CREDBROKER_PLUGIN_"

// Validate checks c without touching the file system, and returns every
// problem, each a [*FieldError].
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	switch {
	case len(c.Command) == 0:
		add("command", "required with plugin: external: [/path/to/program, args…]")
	case c.Command[0] == "":
		add("command[0]", "required: the program's absolute path")
	case !filepath.IsAbs(c.Command[0]):
		add("command[0]", "%q is not an absolute path: the broker runs the program without a shell or PATH lookup", c.Command[0])
	}
	program := "/path/to/program"
	if len(c.Command) > 0 && c.Command[0] != "" {
		program = c.Command[0]
	}
	switch sum := strings.ToLower(c.SHA256); {
	case sum == "":
		add("sha256", "required with plugin: external: the hex SHA-256 of the program, as `sha256sum %s` prints it", program)
	case len(sum) != 64 || !isHex(sum):
		add("sha256", "%q is not a hex SHA-256: 64 characters 0-9 and a-f, as sha256sum prints them", c.SHA256)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Env)) {
		switch {
		case !envName.MatchString(name):
			add("env."+name, "not a variable name: letters, digits and '_', not starting with a digit")
		case strings.HasPrefix(strings.ToUpper(name), reservedEnvPrefix):
			add("env."+name, "%s… is reserved for the variables the broker sets", reservedEnvPrefix)
		case c.Env[name].IsZero():
			add("env."+name, `want a secret reference ("env:NAME" or "file:/path")`)
		}
	}
	return errors.Join(errs...)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// Backend is the value of `plugin:` for a backend run as a separate
// program.
const Backend = "external"

// supported are the plugin protocol versions this broker speaks, offered in
// every handshake.
var supported = []uint32{sdk.ProtocolVersion}
