package external

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/plugins"
)

// ChecksumError refuses to start a program whose file does not hash to the
// configured sha256.
type ChecksumError struct {
	Path string
	// Want is the configured SHA-256, Got the file's.
	Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("refusing to start %s: its SHA-256 is %s, the config pins %s (if the program was upgraded on purpose, put its new sha256 in the config)", e.Path, e.Got, e.Want)
}

// UnsafeProgramError refuses to start a program whose file or directory
// someone other than root or the broker's user may write.
type UnsafeProgramError struct {
	Path string
	Msg  string
}

func (e *UnsafeProgramError) Error() string {
	return "refusing to start the program: " + e.Msg + " (only root or the broker's user may be able to change a plugin program)"
}

// ProtocolError refuses a program that speaks no plugin protocol version
// this broker speaks.
type ProtocolError struct {
	Path string
	// Got is the version the program chose; 0 when it refused every version
	// offered, with Msg its reason.
	Got  uint32
	Want []uint32
	Msg  string
}

func (e *ProtocolError) Error() string {
	if e.Got == 0 {
		return fmt.Sprintf("%s speaks none of the plugin protocol versions this broker speaks (%v): %s", e.Path, e.Want, e.Msg)
	}
	return fmt.Sprintf("%s answered the handshake with plugin protocol version %d; this broker speaks %v: use a build of the program for this broker's protocol", e.Path, e.Got, e.Want)
}

// RemoteError is an error the program returned for a call, with its status.
// It matches [plugins.ErrUnavailable] when the program said the backend is
// unavailable, and context.DeadlineExceeded and context.Canceled for those
// statuses.
type RemoteError struct {
	Code connect.Code
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Is reports whether the status says target.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case plugins.ErrUnavailable:
		return e.Code == connect.CodeUnavailable
	case context.DeadlineExceeded:
		return e.Code == connect.CodeDeadlineExceeded
	case context.Canceled:
		return e.Code == connect.CodeCanceled
	}
	return false
}

// unavailable says the program cannot answer: it is down, or the call never
// reached it.
func unavailable(backend, format string, a ...any) error {
	return fmt.Errorf("backend %s: the plugin program %s: %w", backend, fmt.Sprintf(format, a...), plugins.ErrUnavailable)
}

// callError turns the error of a call into the plugin's error: the
// program's own error as it said it, a call cut short by ctx as ctx's error,
// anything else (the socket closed, the program died mid-call) as
// unavailable.
func callError(ctx context.Context, backend, op string, err error, inst *instance) error {
	var ce *connect.Error
	if errors.As(err, &ce) && connect.IsWireError(err) {
		return &RemoteError{Code: ce.Code(), Msg: ce.Message()}
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", op, ctxErr)
	}
	if inst != nil && inst.exited() {
		return unavailable(backend, "exited during %s (%s)", op, inst.exitReason())
	}
	msg := err.Error()
	if ce != nil {
		msg = ce.Message()
	}
	return unavailable(backend, "did not answer %s: %s", op, strings.TrimSpace(msg))
}
