package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// agentOptions are the agent's flags.
type agentOptions struct {
	outputs      []agentOutput
	format       string
	ttl          time.Duration
	execOnChange string
	readyAddr    string
}

// agentOutput is one file the agent keeps: rendered from a template, or in
// --format when it has none.
type agentOutput struct {
	path         string
	templatePath string
	tmpl         *template.Template
}

// outputFlags are --template and --out, which pair up in command-line
// order: each --template belongs to the --out that follows it.
type outputFlags struct {
	outputs  *[]agentOutput
	template string // a --template still waiting for its --out
}

type templateFlag struct{ f *outputFlags }

func (t templateFlag) String() string { return "" }
func (t templateFlag) Type() string   { return "FILE" }
func (t templateFlag) Set(v string) error {
	if t.f.template != "" {
		return fmt.Errorf("--template %s has no --out after it: write --template FILE --out FILE for each", t.f.template)
	}
	t.f.template = v
	return nil
}

type outFlag struct{ f *outputFlags }

func (o outFlag) String() string { return "" }
func (o outFlag) Type() string   { return "FILE" }
func (o outFlag) Set(v string) error {
	*o.f.outputs = append(*o.f.outputs, agentOutput{path: v, templatePath: o.f.template})
	o.f.template = ""
	return nil
}

// templateData is what a --template is executed with.
type templateData struct {
	Username  string
	Password  string
	URI       string            // the login as a URI (postgres://…, amqp://…), password included
	Env       map[string]string // the credential's variables, as exec sets them (PGHOST … PGPASSWORD)
	Fields    map[string]string // host, port, database, vhost …
	LeaseID   string
	Role      string
	ExpiresAt time.Time // the lease's expiry when the file was written; renewals move it
	// MaxExpiresAt is the lease's max expiry: the credential ends then at
	// the latest.
	MaxExpiresAt time.Time
}

func newAgentCmd() *cobra.Command {
	var opts agentOptions
	flags := &outputFlags{outputs: &opts.outputs}
	cmd := &cobra.Command{
		Use:   "agent ROLE --out FILE [--template TMPL --out FILE]…",
		Short: "Keep a fresh credential for ROLE in files beside a workload (sidecar): renew, replace, revoke on exit",
		Long: `Run beside a workload as a sidecar. The agent issues a credential for ROLE
and writes it to each --out FILE (mode 0600, replaced atomically): with a
--template before it, as that template renders it; without, shell-quoted
KEY='value' lines with --format env (the default), the whole response with
--format json. It renews the lease at half its remaining time, rewriting a
file whose content changes (the expiry in --format json); when the lease
reaches its max expiry it issues a new credential and rewrites the files
while the old one still works, leaving the old lease to expire. On SIGTERM or
Ctrl-C it revokes its leases (the current one, and those it replaced that
have not expired yet), removes the files and exits 0. Logs go to stderr,
and never hold the password.

--template FILE is a Go text/template (missing keys are errors), parsed
before anything is issued, for config files such as .pgpass, my.cnf or a
JDBC properties file. Each --template pairs with the --out after it:
  --template pgpass.tmpl --out ~/.pgpass --template jdbc.tmpl --out db.properties
It sees:
  .Username .Password .URI  the login (.URI holds the password)
  .Env                      the credential's variables: {{.Env.PGHOST}}
  .Fields                   host, port, database, vhost …: {{.Fields.port}}
  .LeaseID .Role
  .ExpiresAt                the lease's expiry (a time.Time), as of the write
  .MaxExpiresAt             when the credential ends at the latest
A .pgpass line: {{.Fields.host}}:{{.Fields.port}}:{{.Fields.database}}:{{.Username}}:{{.Password}}

--exec-on-change CMD runs CMD with sh -c after each (re)write of the files,
one run at a time (rewrites during a run bring one more run); its failure is
logged, not fatal.

--ready-addr ADDR serves GET /ready for a readiness probe: 503 until the
first credential is on disk, 200 while the credential on disk is valid, 503
once a renewal or a new issue has failed and the lease of the credential on
disk has expired.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if flags.template != "" {
				return usageError{fmt.Errorf("--template %s has no --out after it: write --template FILE --out FILE", flags.template)}
			}
			if len(opts.outputs) == 0 {
				return usageError{errors.New("--out is required: where to write the credential")}
			}
			if opts.format != "env" && opts.format != "json" {
				return usageError{fmt.Errorf("--format must be env or json, not %q", opts.format)}
			}
			var seen []string
			for i, o := range opts.outputs {
				abs, err := filepath.Abs(o.path)
				if err != nil || slices.Contains(seen, abs) {
					return usageError{fmt.Errorf("--out %s is given twice", o.path)}
				}
				seen = append(seen, abs)
				if o.templatePath == "" {
					continue
				}
				text, err := os.ReadFile(o.templatePath)
				if err != nil {
					return usageError{fmt.Errorf("--template: %w", err)}
				}
				t, err := template.New(filepath.Base(o.templatePath)).Option("missingkey=error").Parse(string(text))
				if err != nil {
					return usageError{fmt.Errorf("--template %s: %w", o.templatePath, err)}
				}
				opts.outputs[i].tmpl = t
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With(slog.String("component", "agent"), slog.String("role", args[0]))
			var ready *readiness
			if opts.readyAddr != "" {
				ln, err := net.Listen("tcp", opts.readyAddr)
				if err != nil {
					return fmt.Errorf("--ready-addr: %w", err)
				}
				ready = &readiness{}
				log.Info("serving the readiness probe", slog.String("url", "http://"+ln.Addr().String()+"/ready"))
				srv := &http.Server{Handler: ready, ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = srv.Serve(ln) }()
				defer srv.Close()
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			return runAgent(cmd.Context(), c, log, args[0], opts, ready)
		},
	}
	cmd.Flags().Var(outFlag{flags}, "out", "file to keep the credential in (repeatable; rendered by the --template before it, else in --format)")
	cmd.Flags().Var(templateFlag{flags}, "template", "Go text/template for the --out that follows it (repeatable)")
	cmd.Flags().StringVar(&opts.format, "format", "env", "env or json, for an --out without a --template")
	cmd.Flags().DurationVar(&opts.ttl, "ttl", 0, "lease lifetime between renewals (default: the role's default_ttl)")
	cmd.Flags().StringVar(&opts.execOnChange, "exec-on-change", "", "shell command to run after each rewrite of the files")
	cmd.Flags().StringVar(&opts.readyAddr, "ready-addr", "", "address to serve GET /ready on (host:port), for a readiness probe")
	return cmd
}

// readiness is what GET /ready reports: whether a credential is on disk,
// and until when it is valid.
type readiness struct {
	mu      sync.Mutex
	onDisk  bool
	expires time.Time
}

// set records whether a credential is on disk and its lease's expiry.
func (r *readiness) set(onDisk bool, expires time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onDisk, r.expires = onDisk, expires
}

func (r *readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/ready" {
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.mu.Lock()
	onDisk, expires := r.onDisk, r.expires
	r.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case !onDisk:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "no credential on disk yet")
	case !time.Now().Before(expires):
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "the credential on disk expired at %s\n", expires.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "ready: the credential on disk is valid until %s\n", expires.UTC().Format(time.RFC3339))
	}
}

// agentFiles are the files the agent keeps, with what each holds now.
type agentFiles struct {
	opts    agentOptions
	role    string
	written map[string][]byte // by path
}

// write renders resp into every output and replaces the files whose content
// changed; it reports whether any did.
func (f *agentFiles) write(resp *credbrokerv1.IssueCredentialResponse) (bool, error) {
	changed := false
	for _, o := range f.opts.outputs {
		data, err := f.render(o, resp)
		if err != nil {
			return changed, err
		}
		if old, ok := f.written[o.path]; ok && bytes.Equal(old, data) {
			continue
		}
		if err := writeFileAtomic(o.path, data); err != nil {
			return changed, fmt.Errorf("write credential: %w", err)
		}
		f.written[o.path] = data
		changed = true
	}
	return changed, nil
}

func (f *agentFiles) render(o agentOutput, resp *credbrokerv1.IssueCredentialResponse) ([]byte, error) {
	if o.tmpl == nil {
		return renderCredential(f.opts.format, resp)
	}
	cred, lease := resp.GetCredential(), resp.GetLease()
	data := templateData{
		Username: cred.GetUsername(), Password: cred.GetPassword(), URI: cred.GetUri(),
		Env: cred.GetEnv(), Fields: cred.GetFields(),
		LeaseID: lease.GetId(), Role: f.role,
		ExpiresAt: lease.GetExpiresAt().AsTime(), MaxExpiresAt: lease.GetMaxExpiresAt().AsTime(),
	}
	if data.Env == nil {
		data.Env = map[string]string{}
	}
	if data.Fields == nil {
		data.Fields = map[string]string{}
	}
	var b bytes.Buffer
	if err := o.tmpl.Execute(&b, data); err != nil {
		// text/template's errors name the template, the action and the
		// key, never a value.
		return nil, fmt.Errorf("--template %s: %w", o.templatePath, err)
	}
	return b.Bytes(), nil
}

// remove removes every file the agent wrote, and no other: an --out the
// agent never got to write (it stopped before its first credential) may be
// the user's own file.
func (f *agentFiles) remove() {
	for path := range f.written {
		_ = os.Remove(path)
	}
}

// runAgent keeps a credential for role in the files of opts until ctx ends.
func runAgent(ctx context.Context, c *client.Client, log *slog.Logger, role string, opts agentOptions, ready *readiness) error {
	files := &agentFiles{opts: opts, role: role, written: map[string][]byte{}}
	hookCtx, stopHook := context.WithCancel(ctx)
	hook := startHook(hookCtx, opts.execOnChange, log)
	var current *credbrokerv1.Lease
	// replaced are the leases the agent moved off (at their max expiry, or
	// after a failed renewal) and left to expire rather than revoked under
	// the workload: still valid until then, and revoked when the agent
	// stops, as the current one is.
	var replaced []*credbrokerv1.Lease
	defer func() {
		ready.set(false, time.Time{})
		stopHook()
		hook.wait()
		for _, l := range append(unexpired(replaced), current) {
			if l == nil {
				continue
			}
			revokeQuietly(context.WithoutCancel(ctx), c, l.GetId(), os.Stderr)
			log.Info("lease revoked on exit", slog.String("lease_id", l.GetId()))
		}
		files.remove()
	}()
	paths := make([]string, len(opts.outputs))
	for i, o := range opts.outputs {
		paths[i] = o.path
	}
	backoff := time.Second
	for ctx.Err() == nil {
		req := &credbrokerv1.IssueCredentialRequest{Role: role}
		if opts.ttl != 0 {
			req.Ttl = durationpb.New(opts.ttl)
		}
		resp, err := c.IssueCredential(ctx, connect.NewRequest(req))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ce *connect.Error
			if errors.As(err, &ce) && (ce.Code() == connect.CodePermissionDenied || ce.Code() == connect.CodeNotFound || ce.Code() == connect.CodeUnauthenticated) {
				return err // retrying will not help
			}
			log.Warn("issue failed; retrying", slog.String("error", err.Error()), slog.Duration("in", backoff))
			if !sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		if _, err := files.write(resp.Msg); err != nil {
			revokeQuietly(context.WithoutCancel(ctx), c, resp.Msg.GetLease().GetId(), os.Stderr)
			return err
		}
		// The old lease stays valid until it expires, so the workload can
		// move to the new credential at its own pace.
		current = resp.Msg.GetLease()
		ready.set(true, current.GetExpiresAt().AsTime())
		hook.kick()
		log.Info("credential written", slog.String("lease_id", current.GetId()), slog.String("path", strings.Join(paths, ",")),
			slog.Time("max_expires_at", current.GetMaxExpiresAt().AsTime()))
		onRenew := client.OnRenew(func(l *credbrokerv1.Lease) {
			ready.set(true, l.GetExpiresAt().AsTime())
			renewed := &credbrokerv1.IssueCredentialResponse{Lease: l, Credential: resp.Msg.GetCredential()}
			changed, err := files.write(renewed)
			if err != nil {
				log.Warn("rewriting the credential after a renewal failed", slog.String("error", err.Error()))
			}
			if changed {
				hook.kick()
			}
		})
		last, err := c.KeepRenewed(ctx, current, onRenew)
		current = last
		if err != nil {
			log.Warn("renewal failed; issuing a new credential", slog.String("lease_id", last.GetId()), slog.String("error", err.Error()),
				slog.Time("expires_at", last.GetExpiresAt().AsTime()))
			replaced, current = append(unexpired(replaced), last), nil
			continue
		}
		// It can be renewed no further (max expiry, or not renewable): use it
		// for half its remaining time, then replace it. The old lease is left
		// to expire rather than revoked under the workload.
		if !sleep(ctx, time.Until(last.GetExpiresAt().AsTime())/2) {
			break
		}
		replaced, current = append(unexpired(replaced), last), nil
		log.Info("replacing the credential before its lease ends", slog.String("lease_id", last.GetId()),
			slog.Time("expires_at", last.GetExpiresAt().AsTime()))
	}
	return nil
}

// unexpired returns the leases of ls whose expiry has not passed.
func unexpired(ls []*credbrokerv1.Lease) []*credbrokerv1.Lease {
	return slices.DeleteFunc(ls, func(l *credbrokerv1.Lease) bool { return !time.Now().Before(l.GetExpiresAt().AsTime()) })
}

// hook runs --exec-on-change, one run at a time: kicks while it runs bring
// one more run after it.
type hook struct {
	kicks chan struct{}
	done  chan struct{}
}

func startHook(ctx context.Context, command string, log *slog.Logger) *hook {
	h := &hook{kicks: make(chan struct{}, 1), done: make(chan struct{})}
	if command == "" {
		close(h.done)
		return h
	}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.kicks:
			}
			cmd := exec.CommandContext(ctx, "sh", "-c", command)
			cmd.Env = childEnviron(os.Environ())
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil && ctx.Err() == nil {
				log.Warn("--exec-on-change failed", slog.String("error", err.Error()))
			}
		}
	}()
	return h
}

// kick asks for a run of the hook.
func (h *hook) kick() {
	select {
	case h.kicks <- struct{}{}:
	default: // one is pending already
	}
}

// wait returns once the hook's goroutine has ended (after ctx ended).
func (h *hook) wait() { <-h.done }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// renderCredential is the credential in format env (KEY='value' lines) or
// json (the whole response).
func renderCredential(format string, resp *credbrokerv1.IssueCredentialResponse) ([]byte, error) {
	if format == "json" {
		return protojson.MarshalOptions{Multiline: true}.Marshal(resp)
	}
	var b strings.Builder
	writeEnv(&b, resp, "")
	return []byte(b.String()), nil
}

// writeCredential replaces path with the credential, atomically and 0600.
func writeCredential(path, format string, resp *credbrokerv1.IssueCredentialResponse) error {
	data, err := renderCredential(format, resp)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("write credential: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data, mode 0600: written to a
// temporary file in the same directory, then renamed over path, so a reader
// sees the old content or the new, never a part.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
