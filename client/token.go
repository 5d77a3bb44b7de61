package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"unicode"
)

// TokenSource returns the identity token to send with a call.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenError is a token a source produced that cannot be sent: after
// trimming the whitespace around it, it still holds whitespace or control
// characters, or it is not a compact JWT (three base64url segments). The
// token itself is never part of the message.
type TokenError struct {
	// Source names where the token came from: "CREDBROKER_TOKEN", "token
	// file /path", "--token-command \"…\"".
	Source string
	// Reason says what is wrong with it.
	Reason string
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("the identity token from %s %s", e.Source, e.Reason)
}

// CheckToken trims the whitespace around raw and returns the token, or a
// *TokenError naming source when the token cannot be an identity token (a
// JWS in compact form: header.payload.signature, each base64url without
// padding).
func CheckToken(source, raw string) (string, error) {
	tok := strings.TrimSpace(raw)
	if tok == "" {
		return "", &TokenError{Source: source, Reason: "is empty"}
	}
	for i, r := range tok {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			what := "whitespace"
			if r == '\n' || r == '\r' {
				what = "a line break"
			} else if !unicode.IsSpace(r) {
				what = "a control character"
			}
			return "", &TokenError{Source: source, Reason: fmt.Sprintf(
				"has %s inside it (at byte %d of %d): it must be the token alone, one line, like eyJhbGciOi….eyJpc3Mi….signature", what, i, len(tok))}
		}
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", &TokenError{Source: source, Reason: fmt.Sprintf(
			"is not a JWT: it has %d part(s) separated by \".\", want 3 (header.payload.signature)", len(parts))}
	}
	for i, p := range parts {
		name := [...]string{"header", "payload", "signature"}[i]
		if p == "" {
			return "", &TokenError{Source: source, Reason: fmt.Sprintf("is not a JWT: its %s is empty", name)}
		}
		if j := strings.IndexFunc(p, func(r rune) bool { return !isBase64URL(r) }); j >= 0 {
			return "", &TokenError{Source: source, Reason: fmt.Sprintf(
				"is not a JWT: its %s has %q, which is not base64url (A-Z a-z 0-9 - _)", name, p[j:j+1])}
		}
	}
	return tok, nil
}

func isBase64URL(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// StaticToken is a token given directly.
type StaticToken string

// Token returns t without the whitespace around it, or a *TokenError when
// it is not a JWT.
func (t StaticToken) Token(context.Context) (string, error) {
	return CheckToken("the static token", string(t))
}

// envToken is the token in an environment variable.
type envToken struct{ name, value string }

func (t envToken) Token(context.Context) (string, error) { return CheckToken(t.name, t.value) }

// TokenFile is a file holding a token (CREDBROKER_TOKEN_FILE), re-read on
// every call so rotation is picked up.
type TokenFile string

// Token reads the file and returns its token without the whitespace around
// it, or a *TokenError naming the file when it is not a JWT.
func (f TokenFile) Token(context.Context) (string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	return CheckToken("token file "+string(f), string(b))
}

// TokenCommand is a shell command that prints a token on stdout, like a
// kubectl credential plugin (`--token-command "gcloud auth print-identity-token"`).
type TokenCommand string

// Token runs the command with sh -c and returns what it printed without the
// whitespace around it, or a *TokenError naming the command when that is not
// a JWT.
func (c TokenCommand) Token(ctx context.Context) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "sh", "-c", string(c))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return "", fmt.Errorf("token command %q failed: %v: %s", string(c), err, msg)
	}
	return CheckToken(fmt.Sprintf("--token-command %q", string(c)), stdout.String())
}

// errNoToken is returned when no token source is configured.
var errNoToken = errors.New("no identity token: run credbroker login, set CREDBROKER_TOKEN or CREDBROKER_TOKEN_FILE, or pass --token-command")
