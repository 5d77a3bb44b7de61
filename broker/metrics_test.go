package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credbroker/credbroker/plugins/plugintest"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// gauge reads the gauge name (labels as given) from reg; ok is false while it
// has no such series.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, labels) {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsMatch(m *dto.Metric, labels map[string]string) bool {
	if len(m.GetLabel()) != len(labels) {
		return false
	}
	for _, lp := range m.GetLabel() {
		if labels[lp.GetName()] != lp.GetValue() {
			return false
		}
	}
	return true
}

// waitGauge polls until the gauge reads want, for up to 30 s.
func waitGauge(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, ok := gauge(t, reg, name, nil)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (series present: %v), want %v", name, v, ok, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveBroker runs a broker on cfg in process, with metrics in reg and the
// store and backends checked every checkEvery, until the test ends.
func serveBroker(t *testing.T, cfg *Config, reg *prometheus.Registry, checkEvery time.Duration) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	srv, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, CheckInterval: checkEvery})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		srv.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return srv
}

const metricsTestConfig = `
listen: 127.0.0.1:8420
%s
store: {dsn: env:CB_METRICS_TEST_STORE}
issuers:
  - %s
backends:
  - {name: pg, plugin: postgres, owner: test, environment: test, connection: {dsn: env:CB_METRICS_TEST_BACKEND}}
roles:
  - {name: reader, backend: pg, default_ttl: 1m, max_ttl: 5m, postgres: {member_of: [pg_read_all_data]}}
policies:
  - {name: p, issuer: test, subject: app, roles: [reader]}
`

// TestStoreUpMetric: credbroker_store_up follows the lease store, checked
// by a periodic ping, down when the store refuses connections and up again
// when it takes them.
func TestStoreUpMetric(t *testing.T) {
	admin := plugintest.PostgresURL(t)
	store := plugintest.NewTestDatabase(t, admin)
	iss := newTestIssuer(t, t.TempDir())
	t.Setenv("CB_METRICS_TEST_STORE", store)
	t.Setenv("CB_METRICS_TEST_BACKEND", plugintest.NewTestDatabase(t, admin))
	cfg, err := ParseConfig(fmt.Appendf(nil, metricsTestConfig, "", iss.yaml()), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	storeCfg, err := pgx.ParseConfig(store)
	if err != nil {
		t.Fatal(err)
	}
	db := pgx.Identifier{storeCfg.Database}.Sanitize()
	adminExec := func(sql string, args ...any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	reg := prometheus.NewRegistry()
	serveBroker(t, cfg, reg, 50*time.Millisecond)
	waitGauge(t, reg, "credbroker_store_up", 1)

	// The store goes away: it refuses new connections and drops the open ones.
	adminExec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false")
	t.Cleanup(func() { adminExec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true") })
	adminExec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", storeCfg.Database)
	waitGauge(t, reg, "credbroker_store_up", 0)

	adminExec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true")
	waitGauge(t, reg, "credbroker_store_up", 1)
}

// TestTLSExpiryMetric: credbroker_tls_certificate_expiry_timestamp_seconds
// is the serving certificate's NotAfter, at start and after a reload that
// replaced the certificate; a broker without tls has no such series.
func TestTLSExpiryMetric(t *testing.T) {
	admin := plugintest.PostgresURL(t)
	dir := t.TempDir()
	iss := newTestIssuer(t, dir)
	t.Setenv("CB_METRICS_TEST_STORE", plugintest.NewTestDatabase(t, admin))
	t.Setenv("CB_METRICS_TEST_BACKEND", plugintest.NewTestDatabase(t, admin))
	first := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	certFile, keyFile, _ := selfSignedUntil(t, dir, first)
	yaml := fmt.Appendf(nil, metricsTestConfig, fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", certFile, keyFile), iss.yaml())
	cfg, err := ParseConfig(yaml, testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	const name = "credbroker_tls_certificate_expiry_timestamp_seconds"
	reg := prometheus.NewRegistry()
	srv := serveBroker(t, cfg, reg, time.Hour)
	waitGauge(t, reg, name, float64(first.Unix()))

	// A renewed certificate, picked up by a reload.
	renewed := first.Add(30 * 24 * time.Hour)
	selfSignedUntil(t, dir, renewed)
	cfg, err = ParseConfig(yaml, testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(t.Context(), cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if v, _ := gauge(t, reg, name, nil); v != float64(renewed.Unix()) {
		t.Fatalf("%s = %v after the reload, want %v", name, v, renewed.Unix())
	}

	t.Run("NoTLS", func(t *testing.T) {
		cfg, err := ParseConfig(fmt.Appendf(nil, metricsTestConfig, "", iss.yaml()), testDrivers)
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		serveBroker(t, cfg, reg, time.Hour)
		waitGauge(t, reg, "credbroker_store_up", 1) // serving
		if v, ok := gauge(t, reg, name, nil); ok {
			t.Errorf("%s = %v without tls, want no series", name, v)
		}
	})
}

// TestBreakGlassMetric: a break-glass issue is counted by role; an ordinary
// issue of another role is not, and no label names the caller.
func TestBreakGlassMetric(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	token := b.token(t, "app")
	for _, req := range []*credbrokerv1.IssueCredentialRequest{
		{Role: "emergency", BreakGlassReason: "INC-42 orders down"},
		{Role: "reader"},
	} {
		if _, err := b.cred.IssueCredential(t.Context(), authed(token, req)); err != nil {
			t.Fatalf("issue %s: %v", req.GetRole(), err)
		}
	}
	// A break-glass request the policy refuses is a denial, not break-glass.
	_, err := b.cred.IssueCredential(t.Context(), authed(b.token(t, "other"), &credbrokerv1.IssueCredentialRequest{Role: "emergency", BreakGlassReason: "no"}))
	wantCode(t, "break-glass without a policy", err, connect.CodePermissionDenied, "")

	rec := httptest.NewRecorder()
	b.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	var lines []string
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "credbroker_break_glass_total") {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	if want := `credbroker_break_glass_total{role="emergency"} 1`; len(lines) != 1 || lines[0] != want {
		t.Errorf("break-glass series %q, want only %q", lines, want)
	}
	for _, leak := range []string{"INC-42", `"app"`, `"other"`} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics names %s", leak)
		}
	}
}
