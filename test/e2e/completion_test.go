package e2e_test

import (
	"strings"
	"testing"
	"time"
)

// TestShellCompletion: the shell scripts of `credbroker completion` load, and
// the completions they ask the binary for name the roles the caller may
// request and the leases it holds, fetched from the broker with the
// caller's own token, and nothing of anyone else's.
func TestShellCompletion(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "5m", "10m", "")
	app := d.Issuer.Token(t, appSubject, nil, time.Hour)
	other := d.Issuer.Token(t, otherSubject, nil, time.Hour)
	mine := issue(t, b, app, map[string]any{"role": "readonly"})
	theirs := issue(t, b, other, map[string]any{"role": "reports"})

	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, stderr, code := b.CLI(t, app, "completion", shell)
		if code != 0 || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, %d bytes, %s", shell, code, len(out), stderr)
		}
	}

	complete := func(token string, args ...string) []string {
		t.Helper()
		out, stderr, code := b.CLI(t, token, append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("__complete %v: exit %d: %s", args, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], ":") {
			t.Fatalf("__complete %v: no directive line: %q", args, out)
		}
		var names []string
		for _, l := range lines[:len(lines)-1] {
			names = append(names, strings.SplitN(l, "\t", 2)[0])
		}
		return names
	}
	want := func(what string, got, want []string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: completions %q, want %q", what, got, want)
		}
	}

	want("creds ROLE", complete(app, "creds", ""), []string{"readonly"})
	want("creds ROLE (billing)", complete(other, "creds", ""), []string{"readonly", "reports"})
	want("exec re…", complete(other, "exec", "re"), []string{"readonly", "reports"})
	want("connect rep…", complete(other, "connect", "rep"), []string{"reports"})
	want("creds ROLE <second arg>", complete(app, "creds", "readonly", ""), nil)
	want("lease revoke LEASE_ID", complete(app, "lease", "revoke", ""), []string{mine.LeaseID})
	want("lease get LEASE_ID (billing)", complete(other, "lease", "get", ""), []string{theirs.LeaseID})
	want("lease renew <prefix>", complete(app, "lease", "renew", mine.LeaseID[:4]), []string{mine.LeaseID})
	want("lease renew <other prefix>", complete(app, "lease", "renew", "zz"), nil)

	// A broker that does not answer offers nothing, quickly, and no error
	// reaches the shell's screen beyond cobra's directive.
	out, _, code := b.CLI(t, app, "--addr", "http://127.0.0.1:1", "__complete", "creds", "")
	if code != 0 || strings.TrimSpace(out) != ":5" {
		t.Errorf("completion without a broker: exit %d, %q; want only the error directive :5", code, out)
	}
}
