package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/test/harness"
)

// The MQTT backend end to end: Mosquitto 2 with dynamic security
// (.ci/mosquitto-dynsec), driven by the program cmd/credbroker-plugin-mqtt
// that the broker runs as `plugin: external`, pinned by its sha256. The
// workload side uses Mosquitto's own clients, mosquitto_sub and
// mosquitto_pub, with the password in their options file.

// mqttBackend is the name of the MQTT backend in these tests' configs.
const mqttBackend = "mqtt-ext"

// mqttTools returns the paths of mosquitto_sub and mosquitto_pub; the test
// is skipped without them (or fails under CREDBROKER_REQUIRE_SERVICES=1).
func mqttTools(t *testing.T) (sub, pub string) {
	t.Helper()
	var paths []string
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			if os.Getenv(plugintest.RequireServicesEnv) == "1" {
				t.Fatalf("%s is not installed (Debian: apt-get install mosquitto-clients): %v", tool, err)
			}
			t.Skipf("%s is not installed: %v", tool, err)
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1]
}

// mqttEnv is a broker with one MQTT backend run as a separate program.
type mqttEnv struct {
	m      *harness.MQTT
	admin  *harness.DynsecAdmin
	store  *harness.Store
	b      *harness.Broker
	token  string
	role   string // a role of the test's own: every client it makes starts with prefix
	prefix string // cb_<role>
	base   string // a topic level of the test's own
}

// startMQTT starts a broker whose backend mqttBackend runs the program at
// prog (sha256 sum) and whose roles are the YAML roles returns for the
// test's role name and topic base; extra is appended (reaper:, limits:).
func startMQTT(t *testing.T, prog, sum string, roles func(role, base string) string, extra string) *mqttEnv {
	t.Helper()
	e := &mqttEnv{m: harness.NewMQTT(t)}
	e.admin = e.m.Admin(t)
	e.role = harness.RandomName("mq")
	e.prefix = "cb_" + e.role
	e.base = "cbe2e/" + e.role
	e.m.DeleteAtEnd(t, e.prefix)
	iss := harness.NewIssuer(t, "test")
	e.store = harness.NewStore(t)
	rolesYAML := roles(e.role, e.base)
	e.b = harness.StartBroker(t, harness.ServicesConfig(iss, e.m.ExternalBackendYAML(mqttBackend, prog, sum), extra+rolesYAML),
		append(e.store.StoreEnv(), e.m.Env()...)...)
	e.b.Track(e.m.AdminPassword())
	e.token = iss.Token(t, appSubject, nil, time.Hour)
	return e
}

// mqttRole is a role of the MQTT backend with the given TTL and ACLs (YAML
// flow mappings).
func mqttRole(name, ttl string, acls ...string) string {
	return fmt.Sprintf(`  - name: %s
    backend: %s
    default_ttl: %s
    max_ttl: 1h
    mqtt:
      acls:
        - %s
`, name, mqttBackend, ttl, strings.Join(acls, "\n        - "))
}

// tool runs mosquitto_pub or mosquitto_sub as user (its password in env's
// options file) and returns its exit status and what it printed.
func tool(t *testing.T, m *harness.MQTT, env []string, path, user string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(m.ToolArgs(user), args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		return exitErr.ExitCode(), string(out)
	}
	t.Fatalf("%s %v: %v\n%s", path, args, err, out)
	return 0, ""
}

// lines collects the lines a process prints, for a test to wait on.
type lines struct {
	mu   sync.Mutex
	all  []string
	more chan struct{}
}

func newLines(r io.Reader) *lines {
	l := &lines{more: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.all = append(l.all, sc.Text())
			close(l.more)
			l.more = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *lines) snapshot() ([]string, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all), l.more
}

// waitFor waits for a line for which match holds.
func (l *lines) waitFor(t *testing.T, timeout time.Duration, what string, match func(string) bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		all, more := l.snapshot()
		if slices.ContainsFunc(all, match) {
			return
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no %s within %s; printed:\n%s", what, timeout, strings.Join(all, "\n"))
		}
	}
}

// TestMQTTProgramIssuePublishSubscribeRevoke: with the MQTT backend as a
// program pinned by its sha256, an issued credential publishes and
// subscribes within its role's ACLs and is refused outside them (a refused
// publish is dropped silently in MQTT 3.1.1, so an admin subscriber proves
// it never arrived while a later allowed one did); revoking the lease
// disconnects a subscriber connected at that moment, and the client and its
// role are gone from dynsec.
func TestMQTTProgramIssuePublishSubscribeRevoke(t *testing.T) {
	t.Parallel()
	subPath, pubPath := mqttTools(t)
	prog, sum := harness.Program(t, harness.MQTTCommandProgram)
	e := startMQTT(t, prog, sum, func(role, base string) string {
		return "roles:\n" + mqttRole(role, "10m",
			fmt.Sprintf(`{type: publishClientSend, topic: "%s/pub/#", allow: true}`, base),
			fmt.Sprintf(`{type: publishClientSend, topic: "%s/pub/secret/#", allow: false, priority: 10}`, base),
			fmt.Sprintf(`{type: subscribePattern, topic: "%s/#", allow: true}`, base),
		) + singlePolicy(role)
	}, "")

	status, resp := e.b.Call(t, e.token, "ListRoles", nil)
	roles, _ := resp["roles"].([]any)
	if status != http.StatusOK || len(roles) != 1 || str(roles[0].(map[string]any), "plugin") != "mqtt" {
		t.Fatalf("ListRoles: HTTP %d %v, want one role of the program's driver mqtt", status, resp)
	}

	cred := issue(t, e.b, e.token, map[string]any{"role": e.role})
	if !strings.HasPrefix(cred.Username, e.prefix+"_") {
		t.Fatalf("username %q, want the prefix %s_", cred.Username, e.prefix)
	}
	if !e.admin.ClientExists(t, cred.Username) || !e.admin.RoleExists(t, cred.Username) {
		t.Fatalf("after the issue, dynsec has no client or no role %s", cred.Username)
	}
	if cred.Env["MQTT_HOST"] != e.m.Host || cred.Env["MQTT_PORT"] != e.m.Port || cred.Env["MQTT_USERNAME"] != cred.Username ||
		cred.Env["MQTT_TLS"] != "0" {
		t.Errorf("credential env %v does not point at %s:%s as %s", cred.Env, e.m.Host, e.m.Port, cred.Username)
	}
	env := harness.ToolEnv(t, cred.Password)

	// The admin sees everything under base; the holder subscribes to base/#.
	watch := e.admin.Subscribe(t, e.base+"/#")
	subCtx, stopSub := context.WithCancel(context.Background())
	defer stopSub()
	// mosquitto_sub's stdout is a pipe here, which stdio buffers in blocks:
	// stdbuf makes it line-buffered, so each line arrives as it is printed.
	stdbuf, err := exec.LookPath("stdbuf")
	if err != nil {
		t.Skipf("stdbuf (coreutils) is not installed: %v", err)
	}
	sub := exec.CommandContext(subCtx, stdbuf, append([]string{"-oL", subPath}, append(e.m.ToolArgs(cred.Username), "-t", e.base+"/#", "-q", "1", "-v", "-d")...)...)
	sub.Env = append(os.Environ(), env...)
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var subErr bytes.Buffer
	sub.Stderr = &subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subLines := newLines(out)
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	subLines.waitFor(t, 15*time.Second, "SUBACK granting QoS 1 to the holder's subscription", func(l string) bool {
		return strings.HasPrefix(l, "Subscribed (mid: 1): 1")
	})

	// Within the ACL: the holder's own subscriber and the admin receive it.
	if code, out := tool(t, e.m, env, pubPath, cred.Username, "-t", e.base+"/pub/a", "-m", "in-acl", "-q", "1"); code != 0 {
		t.Fatalf("mosquitto_pub within the ACL: exit %d\n%s", code, out)
	}
	watch.WaitFor(t, 10*time.Second, e.base+"/pub/a", "in-acl")
	subLines.waitFor(t, 10*time.Second, "the holder's subscriber receiving in-acl", func(l string) bool {
		return l == e.base+"/pub/a in-acl"
	})

	// Outside it: a topic no ACL allows, and one an ACL denies above the
	// allow. MQTT 3.1.1 acknowledges both and drops them; neither reaches
	// anyone, while the allowed message after them does.
	for _, topic := range []string{e.base + "/other/x", e.base + "/pub/secret/x"} {
		if code, out := tool(t, e.m, env, pubPath, cred.Username, "-t", topic, "-m", "refused", "-q", "1"); code != 0 {
			t.Fatalf("mosquitto_pub to %s: exit %d (MQTT 3.1.1 acknowledges a refused publish)\n%s", topic, code, out)
		}
	}
	if code, out := tool(t, e.m, env, pubPath, cred.Username, "-t", e.base+"/pub/b", "-m", "after", "-q", "1"); code != 0 {
		t.Fatalf("mosquitto_pub within the ACL: exit %d\n%s", code, out)
	}
	seen := watch.WaitFor(t, 10*time.Second, e.base+"/pub/b", "after")
	subLines.waitFor(t, 10*time.Second, "the holder's subscriber receiving after", func(l string) bool {
		return l == e.base+"/pub/b after"
	})
	for _, m := range seen {
		if m.Payload == "refused" {
			t.Errorf("the admin received %q on %s: a publish outside the ACL went through", m.Payload, m.Topic)
		}
	}
	if all, _ := subLines.snapshot(); slices.ContainsFunc(all, func(l string) bool { return strings.HasSuffix(l, " refused") }) {
		t.Errorf("the holder's subscriber received a publish outside the ACL:\n%s", strings.Join(all, "\n"))
	}

	// Subscriptions outside the ACL, $CONTROL included, are refused.
	for _, filter := range []string{"cbe2e-other/" + e.role + "/#", "$CONTROL/#", "$CONTROL/dynamic-security/v1/response"} {
		code, out := tool(t, e.m, env, subPath, cred.Username, "-t", filter, "-d", "-C", "1", "-W", "3")
		if !strings.Contains(out, "Subscribed (mid: 1): 128") {
			t.Errorf("mosquitto_sub -t %s: exit %d, want the subscription refused (SUBACK 128)\n%s", filter, code, out)
		}
	}

	// Revoke while the subscriber is connected: the broker disconnects it,
	// and the credential no longer logs in.
	select {
	case err := <-subDone:
		t.Fatalf("the subscriber ended before the revoke: %v\n%s", err, subErr.String())
	default:
	}
	status, resp = e.b.Call(t, e.token, "RevokeLease", map[string]any{"leaseId": cred.LeaseID})
	if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" {
		t.Fatalf("RevokeLease: HTTP %d %v", status, resp)
	}
	select {
	case err := <-subDone:
		// mosquitto_sub reconnects once and is refused: exit 5 (not authorised).
		if err == nil {
			t.Errorf("the subscriber exited 0 after the revoke; want a refused reconnect")
		}
		if !strings.Contains(subErr.String(), "not authorised") {
			t.Errorf("the subscriber's last words do not say not authorised: %s", subErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber is still connected 10 s after the revoke")
	}
	if e.admin.ClientExists(t, cred.Username) || e.admin.RoleExists(t, cred.Username) {
		t.Errorf("after the revoke, dynsec still has the client or the role %s", cred.Username)
	}
	if code, out := tool(t, e.m, env, pubPath, cred.Username, "-t", e.base+"/pub/c", "-m", "late", "-q", "1"); code == 0 {
		t.Errorf("the revoked credential still publishes\n%s", out)
	}
	if clients, roles := e.admin.MustNames(t, e.prefix); len(clients)+len(roles) != 0 {
		t.Errorf("dynsec still holds %v %v of this test", clients, roles)
	}
}

// issueResult is one issue of the load loop.
type issueResult struct {
	start, end time.Time
	status     int
	code       string // the Connect code of a failure
	username   string // of a success
	leaseID    string
}

// TestMQTTProgramKilledMidLoad: while issues run in a loop against the MQTT
// backend, the plugin program is killed with SIGKILL and kept from starting
// again for a while (its executable moved away, so every restart fails).
// Meanwhile every issue answers unavailable, nothing is half-made (every
// ACTIVE lease has its client in dynsec; every failed issue's lease ends
// REVOKED with no client left), and leases that expired while it was down
// are revoked once it is back. After the supervisor starts it again, issues
// work, and dynsec holds no client or role of this test that no ACTIVE
// lease accounts for.
func TestMQTTProgramKilledMidLoad(t *testing.T) {
	t.Parallel()
	_, pubPath := mqttTools(t)
	built, sum := harness.Program(t, harness.MQTTCommandProgram)
	// A copy of the test's own, which the test moves away and back.
	prog := t.TempDir() + "/credbroker-plugin-mqtt"
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, data, 0o755); err != nil {
		t.Fatal(err)
	}
	short := func(role string) string { return role + "-short" }
	e := startMQTT(t, prog, sum, func(role, base string) string {
		acl := fmt.Sprintf(`{type: publishClientSend, topic: "%s/#", allow: true}`, base)
		return "roles:\n" + mqttRole(role, "10m", acl) + mqttRole(short(role), "2s", acl) + singlePolicy(role, short(role))
	}, "reaper: {interval: 500ms, pending_grace: 5s}\nlimits: {issue_rate: 100000, issue_burst: 100000, request_rate: 100000, request_burst: 100000}\n")

	var (
		mu      sync.Mutex
		results []issueResult
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := issueResult{start: time.Now()}
				status, resp := e.b.Call(t, e.token, "IssueCredential", map[string]any{"role": e.role})
				r.end, r.status = time.Now(), status
				if status == http.StatusOK {
					r.username, r.leaseID = str(resp, "credential", "username"), str(resp, "lease", "id")
				} else {
					r.code, _ = resp["code"].(string)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				time.Sleep(30 * time.Millisecond)
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	count := func(since, until time.Time, ok bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range results {
			if !r.start.Before(since) && (until.IsZero() || !r.end.After(until)) && (r.status == http.StatusOK) == ok {
				n++
			}
		}
		return n
	}
	eventually(t, 30*time.Second, "no issue succeeded before the kill", func() bool { return count(time.Time{}, time.Time{}, true) >= 10 })

	// Leases that expire while the program is down.
	var expiring []issued
	for range 3 {
		expiring = append(expiring, issue(t, e.b, e.token, map[string]any{"role": short(e.role)}))
	}

	// Kill the serving program (and the validation instance, should it
	// still run): children of the broker running prog. Moving prog away
	// first makes every restart fail until it is back.
	pids, err := harness.ChildrenRunning(e.b.Pid(t), prog)
	if err != nil || len(pids) == 0 {
		t.Fatalf("no child of the broker runs %s: %v %v", prog, pids, err)
	}
	if err := os.Rename(prog, prog+".away"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	killed := time.Now()
	t.Logf("killed %v with SIGKILL", pids)
	time.Sleep(4 * time.Second) // the short leases expire meanwhile
	if err := os.Rename(prog+".away", prog); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	for _, x := range expiring {
		if !x.ExpiresAt.After(killed) || !x.ExpiresAt.Before(restored) {
			t.Fatalf("a short lease expires at %s, not while the program was down (%s to %s)", x.ExpiresAt, killed, restored)
		}
	}

	// Down: from a moment after the kill until prog came back, every issue
	// failed, and with unavailable.
	downFrom := killed.Add(500 * time.Millisecond)
	if n := count(downFrom, restored, true); n != 0 {
		t.Errorf("%d issues succeeded while the program was down", n)
	}
	down := count(downFrom, restored, false)
	if down == 0 {
		t.Errorf("no issue was attempted while the program was down")
	}
	eventually(t, 60*time.Second, "issues do not succeed again after the program is back", func() bool {
		return count(restored, time.Time{}, true) >= 10
	})
	stopLoad()
	if !strings.Contains(e.b.Logs(), "the plugin program is back") {
		t.Errorf("the broker's logs do not say the program is back")
	}
	if pids2, err := harness.ChildrenRunning(e.b.Pid(t), prog); err != nil || len(pids2) == 0 || slices.ContainsFunc(pids2, func(p int) bool { return slices.Contains(pids, p) }) {
		t.Errorf("after the restart the broker's children running the program are %v (%v); the killed ones were %v", pids2, err, pids)
	}

	mu.Lock()
	all := slices.Clone(results)
	mu.Unlock()
	codes := map[string]int{}
	failed := 0
	for _, r := range all {
		if r.status != http.StatusOK {
			failed++
			codes[fmt.Sprintf("HTTP %d %s", r.status, r.code)]++
			if r.status != http.StatusServiceUnavailable || r.code != "unavailable" {
				t.Errorf("an issue at %s answered HTTP %d %q, want 503 unavailable", r.start.Format(time.StampMilli), r.status, r.code)
			}
		}
	}
	t.Logf("%d issues: %d succeeded, %d failed %v; %d of the failures while the program was down",
		len(all), len(all)-failed, failed, codes, down)

	// Every failed issue's lease (and every expired one) is revoked by the
	// reaper once the program is back: no lease stays PENDING or REVOKING.
	var leases []harness.LeaseRow
	eventually(t, 90*time.Second, "leases stay PENDING or REVOKING after the program is back", func() bool {
		leases = e.store.Leases(t)
		return !slices.ContainsFunc(leases, func(l harness.LeaseRow) bool { return l.State == "PENDING" || l.State == "REVOKING" })
	})
	active := map[string]bool{}
	states := map[string]int{}
	for _, l := range leases {
		states[l.State]++
		if l.State == "ACTIVE" {
			active[l.Username] = true
		}
	}
	t.Logf("leases: %v", states)
	if want := len(all) - failed; len(active) != want {
		t.Errorf("%d ACTIVE leases, want the %d issues that succeeded", len(active), want)
	}
	// A failed issue leaves a lease only when it raced the kill (the
	// program died during its Create); one refused because the program was
	// already down writes nothing. Either way nothing stays half-made.
	if n := states["REVOKED"] - len(expiring); n < 0 || n > failed {
		t.Errorf("%d REVOKED leases, want the %d expired leases and at most the %d failed issues", states["REVOKED"], len(expiring), failed)
	}
	if len(leases) != len(active)+states["REVOKED"] {
		t.Errorf("leases %v: want only ACTIVE and REVOKED ones", states)
	}
	for _, r := range all {
		if r.status == http.StatusOK && !active[r.username] {
			t.Errorf("issue %s succeeded but its lease is not ACTIVE", r.leaseID)
		}
	}
	for _, x := range expiring {
		status, resp := e.b.Call(t, e.token, "GetLease", map[string]any{"leaseId": x.LeaseID})
		if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" || str(resp, "lease", "revokeReason") != "expired" {
			t.Errorf("GetLease of a lease that expired while the program was down: HTTP %d %v, want REVOKED, expired", status, resp)
		}
	}

	// dynsec: the ACTIVE leases' clients and roles, nothing else of this test.
	clients, roles := e.admin.MustNames(t, e.prefix)
	for name := range active {
		if !slices.Contains(clients, name) || !slices.Contains(roles, name) {
			t.Errorf("lease of %s is ACTIVE, but dynsec has client %v, role %v", name, slices.Contains(clients, name), slices.Contains(roles, name))
		}
	}
	orphans := 0
	for _, n := range slices.Concat(clients, roles) {
		if !active[n] {
			orphans++
			t.Errorf("dynsec holds %s, which no ACTIVE lease accounts for", n)
		}
	}
	t.Logf("dynsec: %d clients and %d roles with prefix %s, %d ACTIVE leases, %d orphans", len(clients), len(roles), e.prefix, len(active), orphans)

	// And a fresh credential works against the broker.
	cred := issue(t, e.b, e.token, map[string]any{"role": e.role})
	if code, out := tool(t, e.m, harness.ToolEnv(t, cred.Password), pubPath, cred.Username, "-t", e.base+"/x", "-m", "back", "-q", "1"); code != 0 {
		t.Errorf("mosquitto_pub with a credential issued after the restart: exit %d\n%s", code, out)
	}
}

// TestMQTTConnect: `credbroker connect ROLE -- -t TOPIC -C 1 -W 10` opens
// mosquitto_sub as a temporary client of the MQTT backend; a message
// another holder publishes arrives. The password is in mosquitto_sub's
// options file under a private XDG_CONFIG_HOME, never on its command line;
// when it exits, the lease is revoked, the client is gone from dynsec, and
// so is the options directory.
func TestMQTTConnect(t *testing.T) {
	t.Parallel()
	subPath, pubPath := mqttTools(t)
	prog, sum := harness.Program(t, harness.MQTTCommandProgram)
	e := startMQTT(t, prog, sum, func(role, base string) string {
		return "roles:\n" + mqttRole(role, "10m",
			`{type: publishClientSend, topic: "demo/#", allow: true}`,
			`{type: subscribePattern, topic: "demo/#", allow: true}`,
		) + singlePolicy(role)
	}, "")
	// The topic is the test's own: the broker is shared, and -C 1 ends at
	// the first message.
	topic := "demo/" + e.role

	// The publisher: another credential of the role.
	pubCred := issue(t, e.b, e.token, map[string]any{"role": e.role})
	pubEnv := harness.ToolEnv(t, pubCred.Password)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := exec.CommandContext(ctx, harness.Binary(t), "connect", e.role, "--", "-t", topic+"/#", "-v", "-C", "1", "-W", "10")
	cli.Env = append(os.Environ(), "CREDBROKER_ADDR="+e.b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN="+e.token)
	var stdout, stderr bytes.Buffer
	cli.Stdout, cli.Stderr = &stdout, &stderr
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cli.Wait() }()

	// Find mosquitto_sub, the child of credbroker connect, and what it
	// runs with.
	var child int
	eventually(t, 20*time.Second, "credbroker connect started no mosquitto_sub", func() bool {
		select {
		case err := <-done:
			t.Fatalf("credbroker connect ended before mosquitto_sub was seen: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		kids, err := harness.ChildrenRunning(cli.Process.Pid, subPath)
		if err != nil {
			t.Fatal(err)
		}
		if len(kids) > 0 {
			child = kids[0]
		}
		return child != 0
	})
	environ, err := harness.Environ(child)
	if err != nil {
		t.Fatalf("read the environment of mosquitto_sub: %v", err)
	}
	var password, username, xdg, tlsOn string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "MQTT_TLS":
			tlsOn = v
		case "MQTT_PASSWORD":
			password = v
		case "MQTT_USERNAME":
			username = v
		case "XDG_CONFIG_HOME":
			xdg = v
		}
	}
	if password == "" || !strings.HasPrefix(username, e.prefix+"_") {
		t.Fatalf("mosquitto_sub runs without the credential's MQTT_PASSWORD and MQTT_USERNAME (username %q)", username)
	}
	if tlsOn != "0" {
		t.Errorf("mosquitto_sub runs with MQTT_TLS=%q, want 0 for the plain-text test broker", tlsOn)
	}
	e.b.Track(password)
	if xdg == "" {
		t.Fatal("mosquitto_sub runs without XDG_CONFIG_HOME: its password has nowhere to come from but the command line")
	}
	if fi, err := os.Stat(xdg); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the options directory %s: %v, mode %v, want 0700", xdg, err, fi.Mode().Perm())
	}
	if opts, err := os.ReadFile(xdg + "/mosquitto_sub"); err != nil || !strings.Contains(string(opts), password) {
		t.Errorf("the options file %s/mosquitto_sub does not hold the password: %v", xdg, err)
	} else if fi, _ := os.Stat(xdg + "/mosquitto_sub"); fi.Mode().Perm() != 0o600 {
		t.Errorf("the options file is mode %v, want 0600", fi.Mode().Perm())
	}

	// Publish until mosquitto_sub has one message and exits; its command
	// line is read all the while.
	var sent []string
	var code int
	for i := 0; ; i++ {
		if args, err := harness.Cmdline(child); err == nil {
			if line := strings.Join(args, " "); strings.Contains(line, password) {
				t.Fatalf("the password is in mosquitto_sub's command line")
			}
		}
		select {
		case err := <-done:
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				code = exitErr.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			i = -1
		case <-time.After(300 * time.Millisecond):
		}
		if i < 0 {
			break
		}
		msg := fmt.Sprintf("hello-%d", i)
		if c, out := tool(t, e.m, pubEnv, pubPath, pubCred.Username, "-t", topic+"/msg", "-m", msg, "-q", "1"); c != 0 {
			t.Fatalf("mosquitto_pub: exit %d\n%s", c, out)
		}
		sent = append(sent, msg)
	}
	got := strings.TrimSpace(stdout.String())
	if code != 0 || !strings.HasPrefix(got, topic+"/msg hello-") || !slices.Contains(sent, strings.TrimPrefix(got, topic+"/msg ")) {
		t.Fatalf("credbroker connect: exit %d, stdout %q, stderr %s; sent %v", code, got, stderr.String(), sent)
	}
	if strings.Contains(stdout.String()+stderr.String(), password) {
		t.Error("credbroker connect printed the password")
	}

	// After exit: lease revoked, client gone, options directory gone.
	var lease harness.LeaseRow
	for _, l := range e.store.Leases(t) {
		if l.Username == username {
			lease = l
		}
	}
	if lease.State != "REVOKED" || lease.RevokeReason != "revoked by holder" {
		t.Errorf("the lease of %s is %q (%q) after mosquitto_sub exited, want REVOKED, revoked by holder", username, lease.State, lease.RevokeReason)
	}
	if e.admin.ClientExists(t, username) || e.admin.RoleExists(t, username) {
		t.Errorf("dynsec still has the client or role %s after connect ended", username)
	}
	if _, err := os.Stat(xdg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the options directory %s is still there after connect ended: %v", xdg, err)
	}
}
