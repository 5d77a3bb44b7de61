package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// What exec does when its credential is due to be replaced (--on-rotate).
const (
	rotateRestart = "restart" // stop the command and start it again with the new credential
	rotateSignal  = "signal"  // rewrite --env-file and send the command SIGHUP
	rotateExit    = "exit"    // stop the command and exit exitRotated
	rotateNone    = ""        // connect: keep renewing, never replace
)

// exitRotated is exec's exit status with --on-rotate=exit: EX_TEMPFAIL of
// sysexits.h, "try again later", for a supervisor that runs exec again.
const exitRotated = 75

// execOptions are exec's flags.
type execOptions struct {
	ttl           time.Duration
	onRotate      string
	restartSignal syscall.Signal
	restartGrace  time.Duration
	envFile       string
}

func newExecCmd() *cobra.Command {
	var opts execOptions
	var restartSignal string
	cmd := &cobra.Command{
		Use:   "exec ROLE -- COMMAND [ARGS…]",
		Short: "Run a command with a fresh credential in its environment, replaced before it expires; revoke it when the command ends",
		Long: `Issue a credential for ROLE, run COMMAND with the credential's variables
(PGHOST … PGPASSWORD, REDISCLI_AUTH, MYSQL_PWD …) and CREDBROKER_LEASE_ID added to
its environment, renew the lease while it runs, and revoke it when the command
exits. The exit status is the command's (128+N when a signal N killed it). The
command does not get your identity token: CREDBROKER_TOKEN,
CREDBROKER_TOKEN_FILE and the like are removed from its environment.

A lease is renewed up to its role's max_ttl, no further. When the lease
nears its max expiry (when less than a third of its TTL, and at least 1s,
is left), or a renewal fails, exec issues a new credential and, by
--on-rotate:

  restart  (the default) send COMMAND --restart-signal, wait up to
           --restart-grace for it to exit, then SIGKILL it, and start it
           again with the new credential's variables; then revoke the old
           lease.
  signal   rewrite --env-file with the new credential and send COMMAND
           SIGHUP, for a program that reloads; the old lease is revoked
           --restart-grace later, once the program had time to move over.
           Needs --env-file: a running program's environment cannot change.
           When the file cannot be rewritten, COMMAND is not signalled: the
           new lease is revoked, COMMAND keeps the credential the file
           still holds, and the rotation is tried again (after 1s,
           doubling up to 30s).
  exit     stop COMMAND as restart does, revoke the lease and exit 75
           (EX_TEMPFAIL), for a supervisor (systemd, Kubernetes) that runs
           exec again.

--env-file FILE (any mode; signal needs it) keeps the current credential in FILE as
KEY='value' lines, as 'credbroker creds -o env' prints them (mode 0600,
replaced atomically, removed on exit); COMMAND finds its path in
CREDBROKER_ENV_FILE.

SIGTERM (and SIGINT and SIGHUP) sent to exec are passed on to COMMAND; exec
then waits for it to exit, revokes the lease and exits with its status.
When stdin, stdout or stderr is a terminal, COMMAND runs in exec's process
group, so job control and Ctrl-C work as usual (Ctrl-C reaches it from the
terminal, not from exec) and signals go to COMMAND alone; otherwise COMMAND
leads a process group of its own and signals go to the whole group.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return usageError{errors.New("usage: credbroker exec ROLE -- COMMAND [ARGS…]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch opts.onRotate {
			case rotateRestart, rotateSignal, rotateExit:
			default:
				return usageError{fmt.Errorf("--on-rotate must be restart, signal or exit, not %q", opts.onRotate)}
			}
			sig, err := parseSignal(restartSignal)
			if err != nil {
				return usageError{fmt.Errorf("--restart-signal: %w", err)}
			}
			opts.restartSignal = sig
			if opts.onRotate == rotateSignal && opts.envFile == "" {
				return usageError{errors.New("--on-rotate signal needs --env-file: a running command's environment cannot change, " +
					"so SIGHUP would make it reload the old credential, which is then revoked")}
			}
			if opts.restartGrace < 0 {
				return usageError{fmt.Errorf("--restart-grace must not be negative, not %s", opts.restartGrace)}
			}
			return runWithCredential(cmd, args[0], opts, func(*credbrokerv1.Credential, string) (launch, error) {
				return launch{argv: args[1:]}, nil
			})
		},
	}
	cmd.Flags().DurationVar(&opts.ttl, "ttl", 0, "lease lifetime between renewals (default: the role's default_ttl)")
	cmd.Flags().StringVar(&opts.onRotate, "on-rotate", rotateRestart, "when the credential is replaced: restart, signal (SIGHUP) or exit (status 75)")
	cmd.Flags().StringVar(&restartSignal, "restart-signal", "SIGTERM", "signal that asks COMMAND to stop before a restart: a name (SIGTERM, TERM, INT) or a number")
	cmd.Flags().DurationVar(&opts.restartGrace, "restart-grace", 10*time.Second, "how long COMMAND may take to stop before SIGKILL (with signal: how long the old credential stays valid after SIGHUP)")
	cmd.Flags().StringVar(&opts.envFile, "env-file", "", "keep the current credential in this file (KEY='value' lines, 0600), rewritten on each rotation")
	return cmd
}

// parseSignal reads a signal's name (SIGTERM, TERM, term) or number.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || unix.SignalName(syscall.Signal(n)) == "" {
			return 0, fmt.Errorf("%d is not a signal number", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%q is not a signal: want a name such as SIGTERM, TERM or HUP, or a number", s)
}

// rotateMargin is how long before a lease's last expiry exec replaces its
// credential: a third of the lease's TTL, at least a second. A lease
// renewed at half its remaining time reaches its max expiry with at least
// about half a TTL left, so the margin leaves the new credential time to be
// issued and the command time to restart while the old one still works.
func rotateMargin(ttl time.Duration) time.Duration { return max(time.Second, ttl/3) }

// exitStatus turns what exec.Cmd.Wait returned into exec's result: the
// command's exit status, or 128+N when signal N killed it, as a shell
// reports it.
func exitStatus(err error) error {
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return err
	}
	if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitCodeError{128 + int(ws.Signal())}
	}
	return exitCodeError{exitErr.ExitCode()}
}

// held is a lease the supervisor holds: issued and not yet revoked.
type held struct {
	resp      *credbrokerv1.IssueCredentialResponse
	lease     *credbrokerv1.Lease // as last renewed
	ttl       time.Duration
	stopRenew context.CancelFunc
	// final is what KeepRenewed returned while the lease was not yet the
	// command's (during a restart), to act on once it is.
	final *renewResult
}

// Events of the supervisor's loop.
type (
	renewResult struct {
		h     *held
		lease *credbrokerv1.Lease
		err   error
	}
	issueResult struct{ h *held }
	childExited struct {
		r   *running
		err error
	}
)

// running is one run of the command.
type running struct {
	cmd    *exec.Cmd
	optDir string // the client's option files, removed when it exits
}

// supervisor runs a command with a credential for role and keeps it on a
// live one, as exec's help says; connect runs it with rotateNone.
type supervisor struct {
	c        *client.Client
	role     string
	plugin   string
	opts     execOptions
	prepare  func(cred *credbrokerv1.Credential, plugin string) (launch, error)
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	ownGroup bool // the command leads a process group of its own

	bg     context.Context // background work; cancelled when run ends
	events chan any
	wg     sync.WaitGroup // background goroutines
	mu     sync.Mutex     // guards leases
	leases map[string]*held
	cur    *held // the credential the command runs with
}

// runWithCredential issues a credential for role, runs the command prepare
// returns with the credential in its environment, keeps the lease renewed
// while it runs, replaces the credential per opts.onRotate, and revokes
// every lease it issued when the command ends, however it ends.
func runWithCredential(cmd *cobra.Command, role string, opts execOptions, prepare func(cred *credbrokerv1.Credential, plugin string) (launch, error)) error {
	c, err := newClient()
	if err != nil {
		return err
	}
	s := &supervisor{
		c: c, role: role, opts: opts, prepare: prepare,
		stdin: cmd.InOrStdin(), stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(),
		events: make(chan any, 8),
		leases: map[string]*held{},
	}
	s.ownGroup = !isTerminal(s.stdout) && !isTerminal(s.stderr)
	if f, ok := s.stdin.(*os.File); ok && isTerminal(f) {
		s.ownGroup = false
	}
	return s.run(cmd.Context())
}

func (s *supervisor) run(ctx context.Context) error {
	// Registered before anything is issued, so a signal from now on is
	// either passed to the command or ends the issue (ctx, from main's
	// signal.NotifyContext).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.bg = bg
	defer s.finish(cancel)

	first, err := s.issue(ctx)
	if err != nil {
		return err
	}
	s.plugin = pluginOf(ctx, s.c, s.role)
	s.cur = first
	s.renew(first)
	if err := s.writeEnvFile(first); err != nil {
		return err
	}
	child, err := s.start(first)
	if err != nil {
		return err
	}

	var (
		rotateC    <-chan time.Time // when the current credential is due
		graceC     <-chan time.Time // when a command asked to stop is killed
		stopping   bool             // a stop signal came: no more rotations
		restarting bool             // the command was asked to stop for a rotation
		issuing    bool
		pending    *held // the new credential, once the command has stopped
		// rewriteBackoff is how long to wait before the next rotation
		// when --env-file could not be rewritten (signal).
		rewriteBackoff = time.Second
	)
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGTERM || sig == syscall.SIGINT && s.ownGroup {
				stopping = true
			}
			if sig == syscall.SIGINT && !s.ownGroup {
				continue // the terminal sent it to the command as well
			}
			s.signal(child, sig.(syscall.Signal))

		case <-rotateC:
			rotateC = nil
			switch {
			case stopping, restarting, issuing:
			case s.opts.onRotate == rotateExit:
				fmt.Fprintf(s.stderr, "credbroker: the credential of lease %s is due for replacement: stopping %s to exit %d\n",
					s.cur.lease.GetId(), child.cmd.Args[0], exitRotated)
				restarting = true
				s.signal(child, s.opts.restartSignal)
				graceC = time.After(s.opts.restartGrace)
			default:
				issuing = true
				s.goIssue()
			}

		case <-graceC:
			graceC = nil
			fmt.Fprintf(s.stderr, "credbroker: %s did not exit within %s of %s: killing it\n",
				child.cmd.Args[0], s.opts.restartGrace, unix.SignalName(s.opts.restartSignal))
			s.signal(child, syscall.SIGKILL)

		case ev := <-s.events:
			switch ev := ev.(type) {
			case renewResult:
				ev.h.lease = ev.lease
				if ev.h != s.cur {
					ev.h.final = &ev
					continue
				}
				rotateC = s.due(ev)

			case issueResult:
				issuing = false
				h := ev.h
				if stopping {
					continue // revoked when the command has exited
				}
				if err := s.writeEnvFile(h); err != nil {
					if s.opts.onRotate == rotateSignal {
						// SIGHUP would make the command reload the old
						// credential from the file, and lose it when the
						// old lease is revoked: stay on the old one, which
						// the file still holds, and try again.
						s.keepCurrent(h, err, child, rewriteBackoff)
						rotateC = time.After(rewriteBackoff)
						rewriteBackoff = nextBackoff(rewriteBackoff)
						continue
					}
					fmt.Fprintf(s.stderr, "credbroker: %v\n", err)
				}
				rewriteBackoff = time.Second
				switch s.opts.onRotate {
				case rotateSignal:
					old := s.cur
					s.cur = h
					where := ""
					if s.opts.envFile != "" {
						where = " in " + s.opts.envFile
					}
					fmt.Fprintf(s.stderr, "credbroker: new credential (lease %s, user %s)%s; sending %s SIGHUP\n",
						h.lease.GetId(), h.resp.GetCredential().GetUsername(), where, child.cmd.Args[0])
					s.signal(child, syscall.SIGHUP)
					s.revokeAfter(old, s.opts.restartGrace)
					if h.final != nil {
						rotateC = s.due(*h.final)
					}
				default: // rotateRestart
					pending = h
					restarting = true
					fmt.Fprintf(s.stderr, "credbroker: new credential (lease %s, user %s); restarting %s\n",
						h.lease.GetId(), h.resp.GetCredential().GetUsername(), child.cmd.Args[0])
					s.signal(child, s.opts.restartSignal)
					graceC = time.After(s.opts.restartGrace)
				}

			case childExited:
				if ev.r != child {
					continue
				}
				if child.optDir != "" {
					_ = os.RemoveAll(child.optDir)
				}
				if !restarting || stopping {
					return exitStatus(ev.err)
				}
				restarting, graceC = false, nil
				if s.opts.onRotate == rotateExit {
					return exitCodeError{exitRotated}
				}
				old := s.cur
				s.cur, pending = pending, nil
				if child, err = s.start(s.cur); err != nil {
					return err
				}
				s.revokeAfter(old, 0) // the command has moved on
				if s.cur.final != nil {
					rotateC = s.due(*s.cur.final)
				}
			}
		}
	}
}

// due reports, from the end of a lease's renewals, when the command's
// credential is to be replaced: rotateMargin before the lease's last
// expiry, or now when a renewal failed. It returns nil (never) for connect.
func (s *supervisor) due(r renewResult) <-chan time.Time {
	if r.err != nil {
		fmt.Fprintf(s.stderr, "credbroker: renewing lease %s failed: %v (the login ends at %s)\n",
			r.lease.GetId(), r.err, r.lease.GetExpiresAt().AsTime().Local().Format(time.Kitchen))
	}
	if s.opts.onRotate == rotateNone {
		return nil
	}
	at := time.Now()
	if r.err == nil {
		at = r.lease.GetExpiresAt().AsTime().Add(-rotateMargin(r.h.ttl))
	}
	return time.After(time.Until(at))
}

// keepCurrent gives up the new credential h, which could not be written to
// --env-file (err): the command is not signalled and keeps the current
// credential, whose lease stays held until a later rotation succeeds or it
// expires; h's lease is revoked at once, as nothing uses it.
func (s *supervisor) keepCurrent(h *held, err error, child *running, retry time.Duration) {
	fmt.Fprintf(s.stderr, "credbroker: %v: not sending %s SIGHUP; revoking the new lease %s and keeping lease %s (the login ends at %s); trying again in %s\n",
		err, child.cmd.Args[0], h.lease.GetId(), s.cur.lease.GetId(),
		s.cur.lease.GetExpiresAt().AsTime().Local().Format(time.Kitchen), retry)
	s.revokeAfter(h, 0)
}

// nextBackoff is the wait after d before the next try of something that
// keeps failing: doubled, up to 30s.
func nextBackoff(d time.Duration) time.Duration { return min(2*d, 30*time.Second) }

// issue issues a credential for the role and holds its lease.
func (s *supervisor) issue(ctx context.Context) (*held, error) {
	req := &credbrokerv1.IssueCredentialRequest{Role: s.role}
	if s.opts.ttl != 0 {
		req.Ttl = durationpb.New(s.opts.ttl)
	}
	resp, err := s.c.IssueCredential(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	lease := resp.Msg.GetLease()
	h := &held{resp: resp.Msg, lease: lease, ttl: lease.GetExpiresAt().AsTime().Sub(lease.GetCreatedAt().AsTime())}
	s.mu.Lock()
	s.leases[lease.GetId()] = h
	s.mu.Unlock()
	return h, nil
}

// goIssue issues a new credential in the background, trying again with
// backoff until it succeeds or run ends, and sends an issueResult.
func (s *supervisor) goIssue() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		backoff := time.Second
		for {
			h, err := s.issue(s.bg)
			if err == nil {
				s.renew(h)
				s.send(issueResult{h})
				return
			}
			if s.bg.Err() != nil {
				return
			}
			fmt.Fprintf(s.stderr, "credbroker: issuing a new credential failed: %v (trying again in %s)\n", err, backoff)
			if !sleep(s.bg, backoff) {
				return
			}
			backoff = nextBackoff(backoff)
		}
	}()
}

// renew keeps h renewed in the background and sends a renewResult when it
// can be renewed no further.
func (s *supervisor) renew(h *held) {
	ctx, cancel := context.WithCancel(s.bg)
	h.stopRenew = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		last, err := s.c.KeepRenewed(ctx, h.lease)
		if ctx.Err() == nil {
			s.send(renewResult{h: h, lease: last, err: err})
		}
	}()
}

// send hands ev to run's loop, unless run has ended.
func (s *supervisor) send(ev any) {
	select {
	case s.events <- ev:
	case <-s.bg.Done():
	}
}

// revokeAfter revokes h's lease after d, or at once when run ends.
func (s *supervisor) revokeAfter(h *held, d time.Duration) {
	s.mu.Lock()
	delete(s.leases, h.lease.GetId())
	s.mu.Unlock()
	h.stopRenew()
	id := h.lease.GetId()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sleep(s.bg, d)
		revokeQuietly(context.WithoutCancel(s.bg), s.c, id, s.stderr)
	}()
}

// finish ends the background work and revokes every lease still held; the
// env file goes with them.
func (s *supervisor) finish(cancel context.CancelFunc) {
	cancel()
	s.wg.Wait()
	var wg sync.WaitGroup
	for _, h := range s.leases {
		wg.Go(func() { revokeQuietly(context.WithoutCancel(s.bg), s.c, h.lease.GetId(), s.stderr) })
	}
	wg.Wait()
	if s.opts.envFile != "" {
		_ = os.Remove(s.opts.envFile)
	}
}

// writeEnvFile replaces --env-file, if set, with h's credential.
func (s *supervisor) writeEnvFile(h *held) error {
	if s.opts.envFile == "" {
		return nil
	}
	if err := writeCredential(s.opts.envFile, "env", h.resp); err != nil {
		return fmt.Errorf("--env-file: %w", err)
	}
	return nil
}

// start runs the command with h's credential.
func (s *supervisor) start(h *held) (*running, error) {
	cred := h.resp.GetCredential()
	l, err := s.prepare(cred, s.plugin)
	if err != nil {
		return nil, err
	}
	child := exec.Command(l.argv[0], l.argv[1:]...)
	child.Stdin, child.Stdout, child.Stderr = s.stdin, s.stdout, s.stderr
	child.Env = childEnviron(os.Environ())
	for k, v := range cred.GetEnv() {
		child.Env = append(child.Env, k+"="+v)
	}
	child.Env = append(child.Env, "CREDBROKER_LEASE_ID="+h.lease.GetId())
	if s.opts.envFile != "" {
		child.Env = append(child.Env, "CREDBROKER_ENV_FILE="+s.opts.envFile)
	}
	r := &running{cmd: child}
	if len(l.files) > 0 {
		if r.optDir, err = writeOptionFiles(l.files); err != nil {
			return nil, err
		}
		child.Env = slices.DeleteFunc(child.Env, func(kv string) bool { return strings.HasPrefix(kv, "XDG_CONFIG_HOME=") })
		child.Env = append(child.Env, "XDG_CONFIG_HOME="+r.optDir)
	}
	if l.note != "" {
		fmt.Fprintln(s.stderr, l.note)
	}
	if s.ownGroup {
		child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := child.Start(); err != nil {
		if r.optDir != "" {
			_ = os.RemoveAll(r.optDir)
		}
		return nil, fmt.Errorf("start %s: %w", l.argv[0], err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := child.Wait()
		// Not s.send: run waits for this event whatever else has ended.
		s.events <- childExited{r: r, err: err}
	}()
	return r, nil
}

// signal sends sig to the command: to its process group when it leads one.
func (s *supervisor) signal(r *running, sig syscall.Signal) {
	p := r.cmd.Process
	if s.ownGroup {
		_ = syscall.Kill(-p.Pid, sig)
		return
	}
	_ = p.Signal(sig)
}
