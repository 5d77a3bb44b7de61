package sdk

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/plugins"
)

// errNotOpen answers a call that needs the plugin before Open.
var errNotOpen = connect.NewError(connect.CodeFailedPrecondition, errors.New("the plugin is not open: the broker calls Open first"))

// toConnect turns a plugin's error into the status the broker reads: a
// backend that cannot be reached is unavailable, so the broker fails closed
// for this backend and retries revokes; only the (already sanitized) message
// travels.
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code := connect.CodeUnknown
	switch {
	case errors.Is(err, plugins.ErrUnavailable):
		code = connect.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	}
	return connect.NewError(code, errors.New(err.Error()))
}

// invalid is a role spec or connection section that does not parse.
func invalid(err error) error {
	return connect.NewError(connect.CodeInvalidArgument, errors.New(err.Error()))
}
