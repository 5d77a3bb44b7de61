package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"

	"github.com/credbroker/credbroker/plugins"
)

// errUnauthorized replaces rabbit-hole's untyped error for a 401 answer.
var errUnauthorized = errors.New("the management API refused the admin's credentials (401)")

// classify marks err with [plugins.ErrUnavailable] when it says the
// management API could not be reached or cannot serve, so the broker answers
// `unavailable` rather than `internal`. A canceled context is left alone.
func classify(err error) error {
	if err == nil || errors.Is(err, plugins.ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err
	}
	// rabbit-hole reports a 401 as a bare string; the admin whose password
	// no longer works leaves the plugin unable to do anything, as an
	// unreachable server does.
	if err.Error() == "Error: API responded with a 401 Unauthorized" {
		err = errUnauthorized
	}
	var urlErr *url.Error
	switch {
	case errors.As(err, &urlErr), errors.Is(err, errUnauthorized), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %w", plugins.ErrUnavailable, err)
	}
	switch statusOf(err) {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %w", plugins.ErrUnavailable, err)
	}
	return err
}

// statusOf returns the HTTP status of an error answer from the management
// API, or 0 when err is not one.
func statusOf(err error) int {
	var apiErr rabbithole.ErrorResponse
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

func isNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// done checks the answer of a rabbit-hole call that returns the raw
// response: the call's error, then the status, which must be 2xx (rabbit-hole
// only fails on 4xx and 5xx). It closes the body and returns the status.
func done(res *http.Response, err error) (int, error) {
	if err != nil {
		return 0, classify(err)
	}
	if res == nil {
		return 0, errors.New("no answer from the management API")
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res.StatusCode, fmt.Errorf("unexpected answer from the management API: %s", res.Status)
	}
	return res.StatusCode, nil
}

// ctxTransport binds every request a rabbit-hole client makes to ctx:
// rabbit-hole's methods take no context, so each plugin call makes a client
// of its own with this transport (see Plugin.client).
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

// RoundTrip sends req under the transport's context, on a kept-alive
// connection. rabbit-hole asks for a new connection per request
// (Request.Close): that made every Create and Revoke open three TCP
// connections, and the node accept them, for requests of a millisecond.
func (t ctxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.WithContext(t.ctx)
	r.Close = false
	return t.base.RoundTrip(r)
}
