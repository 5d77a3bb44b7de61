package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// TokenSource returns the identity token to send with a call.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a token given directly (CREDBROKER_TOKEN).
type StaticToken string

// Token returns t.
func (t StaticToken) Token(context.Context) (string, error) {
	if strings.TrimSpace(string(t)) == "" {
		return "", errors.New("the identity token is empty")
	}
	return strings.TrimSpace(string(t)), nil
}

// TokenFile is a file holding a token (CREDBROKER_TOKEN_FILE), re-read on
// every call so rotation is picked up.
type TokenFile string

// Token reads the file.
func (f TokenFile) Token(context.Context) (string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", f)
	}
	return tok, nil
}

// TokenCommand is a shell command that prints a token on stdout, like a
// kubectl credential plugin (`--token-command "gcloud auth print-identity-token"`).
type TokenCommand string

// Token runs the command with sh -c.
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
	tok := strings.TrimSpace(stdout.String())
	if tok == "" {
		return "", fmt.Errorf("token command %q printed nothing", string(c))
	}
	return tok, nil
}
