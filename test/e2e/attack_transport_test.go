package e2e_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// Attacks on the broker's transport: connections held open, bodies
// trickled, anonymous bodies, metrics as an inventory, over-long tokens,
// claims shaped to fool the policy, tokens leaking to wrapped programs, and
// TLS without a client certificate.

// healthRequest is a complete HTTP/1.1 health check, kept alive.
const healthRequest = "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

// sreClaimPolicy grants readonly to any token whose groups claim is "sre".
const sreClaimPolicy = `  - name: sre
    issuer: test
    claims: {groups: sre}
    roles: [readonly]
`

// TestAttackSlowClients: read_timeout and idle_timeout of 2s close a
// connection that trickles a body and one left idle after a request.
func TestAttackSlowClients(t *testing.T) {
	t.Parallel()
	const readTimeout, idleTimeout = 2 * time.Second, 2 * time.Second
	_, b := setup(t, "10m", "1h", fmt.Sprintf("limits: {read_timeout: %s, idle_timeout: %s}\n", readTimeout, idleTimeout))

	t.Run("TrickledBody", func(t *testing.T) {
		t.Parallel()
		// A bearer token of any shape gets past the header check; the body
		// is read before the token is verified, a byte per second.
		conn := dial(t, b)
		fmt.Fprintf(conn, "POST %sListRoles HTTP/1.1\r\nHost: broker\r\nAuthorization: Bearer x.y.z\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", harness.CredentialService)
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		closedWithin(t, conn, start, readTimeout+3*time.Second)
	})

	t.Run("TrickledBodyHTTP2", func(t *testing.T) {
		t.Parallel()
		// The same over gRPC on h2c: the stream ends at read_timeout.
		h2c := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
		h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
		defer h2c.CloseIdleConnections()
		body, trickle := io.Pipe()
		defer trickle.Close()
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for range tick.C {
				if _, err := trickle.Write([]byte{0}); err != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(t.Context(), readTimeout+3*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.Addr+harness.CredentialService+"ListRoles", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Authorization", "Bearer x.y.z")
		start := time.Now()
		res, err := h2c.Do(req)
		status := ""
		if err == nil {
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			status = res.Trailer.Get("Grpc-Status")
		}
		if ctx.Err() != nil {
			t.Fatalf("the stream is still open after %s", time.Since(start).Round(time.Millisecond))
		}
		t.Logf("the stream ended after %s (grpc-status %q, %v)", time.Since(start).Round(time.Millisecond), status, err)
	})

	t.Run("IdleKeepAlive", func(t *testing.T) {
		t.Parallel()
		conn := dial(t, b)
		if _, err := io.WriteString(conn, healthRequest); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("health check: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Close {
			t.Fatalf("health check: HTTP %d, close %v; want 200 kept alive", res.StatusCode, res.Close)
		}
		closedWithin(t, readerConn{conn, br}, time.Now(), idleTimeout+3*time.Second)
	})
}

// TestAttackConnectionsAndAnonymousBodies: with max_connections 4, ten
// connections are not all served at once, and the rest are served as the
// first ones close; a call without a bearer token is refused before its body
// is read (read_timeout stays 30s here, so a server waiting for the body
// would not answer in time).
func TestAttackConnectionsAndAnonymousBodies(t *testing.T) {
	t.Parallel()
	const maxConns = 4
	_, b := setup(t, "10m", "1h", fmt.Sprintf("limits: {max_connections: %d}\n", maxConns))

	t.Run("MaxConnections", func(t *testing.T) {
		const n = 10
		type answer struct {
			i   int
			err error
		}
		answers := make(chan answer, n)
		conns := make([]net.Conn, n)
		for i := range conns {
			conns[i] = dial(t, b)
			if _, err := io.WriteString(conns[i], healthRequest); err != nil {
				t.Fatal(err)
			}
			go func(i int) {
				_ = conns[i].SetReadDeadline(time.Now().Add(time.Minute))
				res, err := http.ReadResponse(bufio.NewReader(conns[i]), nil)
				if err == nil {
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", res.StatusCode)
					}
				}
				answers <- answer{i, err}
			}(i)
		}
		// The first ones are answered at once; the rest wait while those
		// stay open (kept alive). The harness may hold one slot itself.
		served := map[int]bool{}
		settle := time.After(3 * time.Second)
	wait:
		for {
			select {
			case a := <-answers:
				if a.err != nil {
					t.Fatalf("connection %d: %v", a.i, a.err)
				}
				served[a.i] = true
			case <-settle:
				break wait
			}
		}
		if len(served) == 0 || len(served) > maxConns {
			t.Fatalf("%d of %d connections served at once, want 1 to %d", len(served), n, maxConns)
		}
		t.Logf("%d of %d connections served while they stay open", len(served), n)
		for i := range served {
			conns[i].Close()
		}
		// Closing them frees slots: every other connection is served in
		// turn (each closes as soon as it is answered).
		for len(served) < n {
			select {
			case a := <-answers:
				if a.err != nil {
					t.Fatalf("connection %d: %v", a.i, a.err)
				}
				served[a.i] = true
				conns[a.i].Close()
			case <-time.After(20 * time.Second):
				t.Fatalf("only %d of %d connections served after the first ones closed", len(served), n)
			}
		}
	})

	t.Run("NoBearerBodyNotRead", func(t *testing.T) {
		// Connect over HTTP/1.1: headers announcing 32 KiB, no body.
		for _, path := range []string{harness.CredentialService + "IssueCredential", "/credbroker.v1.AdminService/ListAllLeases"} {
			for _, auth := range []string{"", "Authorization: Basic YTpi\r\n", "Authorization: Bearer \r\n"} {
				conn := dial(t, b)
				fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: broker\r\n%sContent-Type: application/json\r\nContent-Length: 32768\r\n\r\n", path, auth)
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				res, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatalf("%s %q: no response without the body: %v", path, auth, err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				conn.Close()
				if res.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"unauthenticated"`) {
					t.Errorf("%s %q: HTTP %d %s, want 401 unauthenticated", path, auth, res.StatusCode, body)
				}
			}
		}

		// gRPC over h2c: a stream whose body never comes.
		h2c := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
		h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
		defer h2c.CloseIdleConnections()
		body, never := io.Pipe()
		defer never.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.Addr+harness.CredentialService+"ListRoles", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		res, err := h2c.Do(req)
		if err != nil {
			t.Fatalf("gRPC without a token and without a body: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		status := res.Header.Get("Grpc-Status") + res.Trailer.Get("Grpc-Status")
		if res.ProtoMajor != 2 || status != "16" {
			t.Errorf("gRPC without a token: %s grpc-status %q, want HTTP/2 and 16 (unauthenticated)", res.Proto, status)
		}
	})
}

// TestAttackInventoryTokensClaims: /metrics is not on the API port; an
// issuer's max_token_lifetime refuses a long-lived token; a claim nested in a
// list does not match a policy's string; `exec` does not hand the caller's
// token to the program it runs.
func TestAttackInventoryTokensClaims(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	cfg := d.Config(rolesConfig(d.Backend, "10m", "1h", sreClaimPolicy+"metrics_listen: "+harness.MetricsListenPlaceholder+"\n"))
	limited := strings.Replace(cfg, "    algorithms: [ES256]\n", "    algorithms: [ES256]\n    max_token_lifetime: 1h\n", 1)
	if limited == cfg {
		t.Fatal("the issuer's YAML changed: cannot add max_token_lifetime")
	}
	b := harness.StartBroker(t, limited, d.Env()...)
	iss := d.Issuer

	t.Run("MetricsNotOnAPIPort", func(t *testing.T) {
		res, err := http.Get(b.Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || strings.Contains(string(body), "readonly") {
			t.Errorf("GET /metrics on the API port: HTTP %d (%d bytes), want 404", res.StatusCode, len(body))
		}
		res, err = http.Get(b.MetricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET /metrics on metrics_listen: HTTP %d", res.StatusCode)
		}
	})

	t.Run("MaxTokenLifetime", func(t *testing.T) {
		status, resp := b.Call(t, iss.Token(t, appSubject, nil, 24*time.Hour), "ListRoles", nil)
		msg := wantError(t, "a 24h token", status, resp, http.StatusUnauthorized, "unauthenticated")
		if !strings.Contains(msg, "max_token_lifetime") {
			t.Errorf("the message does not name max_token_lifetime: %q", msg)
		}
		// Without iat, exp - now counts.
		status, resp = b.Call(t, iss.Token(t, appSubject, map[string]any{"iat": nil}, 24*time.Hour), "ListRoles", nil)
		wantError(t, "a 24h token without iat", status, resp, http.StatusUnauthorized, "unauthenticated")
		if status, resp := b.Call(t, iss.Token(t, appSubject, nil, 30*time.Minute), "ListRoles", nil); status != http.StatusOK {
			t.Errorf("a 30m token: HTTP %d %v", status, resp)
		}
	})

	t.Run("NestedClaims", func(t *testing.T) {
		for name, groups := range map[string]any{
			"NestedList": []any{[]any{"sre"}},
			"Object":     map[string]any{"sre": "sre"},
			"Bool":       true,
			"Number":     1,
		} {
			token := iss.Token(t, "mallory", map[string]any{"groups": groups}, time.Hour)
			status, resp := b.Call(t, token, "IssueCredential", map[string]any{"role": "readonly"})
			wantError(t, name+" groups claim", status, resp, http.StatusForbidden, "permission_denied")
		}
		for name, groups := range map[string]any{"String": "sre", "List": []any{"dev", "sre"}} {
			token := iss.Token(t, "alice", map[string]any{"groups": groups}, time.Hour)
			if status, resp := b.Call(t, token, "IssueCredential", map[string]any{"role": "readonly"}); status != http.StatusOK {
				t.Errorf("%s groups claim: HTTP %d %v", name, status, resp)
			}
		}
	})

	t.Run("ExecDoesNotPassToken", func(t *testing.T) {
		token := iss.Token(t, appSubject, nil, 30*time.Minute)
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		for name, env := range map[string][]string{
			"Token":     {"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN=" + token},
			"TokenFile": {"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN=", "CREDBROKER_TOKEN_FILE=" + tokenFile, "CREDBROKER_TOKEN_COMMAND=cat " + tokenFile},
		} {
			out, stderr, code := harness.RunCLI(t, env, "exec", "readonly", "--", "env")
			if code != 0 {
				t.Fatalf("%s: exec: exit %d, stderr %s", name, code, stderr)
			}
			for line := range strings.Lines(out) {
				if pw, ok := strings.CutPrefix(strings.TrimSpace(line), "PGPASSWORD="); ok {
					b.Track(pw)
				}
			}
			if !strings.Contains(out, "PGPASSWORD=") || !strings.Contains(out, "CREDBROKER_LEASE_ID=lease_") {
				t.Fatalf("%s: the program did not get the credential:\n%s", name, out)
			}
			if strings.Contains(out, "CREDBROKER_TOKEN") || strings.Contains(out, token) || strings.Contains(out, tokenFile) {
				t.Errorf("%s: the program run by exec got the caller's identity token", name)
			}
		}
	})
}

// TestAttackTLS: with tls.client_ca_file (client_auth require) a client
// without a certificate, or with one from another CA, is refused; a SIGHUP
// after the certificate files are replaced serves the new certificate to new
// connections while an open HTTP/2 connection keeps working.
func TestAttackTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "credbroker test CA")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.writeServerCert(t, 1, certFile, keyFile)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	client := ca.clientCert(t, "app")
	newClient := func(certs ...tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: ca.pool}
		if len(certs) > 0 {
			// Sent even when the server asks for another CA's.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}

	d := harness.NewDeployment(t)
	cfg := strings.Replace(d.Config(rolesConfig(d.Backend, "10m", "1h", "")), "listen: "+harness.ListenPlaceholder+"\n",
		fmt.Sprintf("listen: %s\ntls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n", harness.ListenPlaceholder, certFile, keyFile, caFile), 1)
	b := harness.StartBrokerWith(t, harness.Options{Config: cfg, Env: d.Env(), HTTPClient: newClient(client)})

	health := func(c *http.Client) (*http.Response, bool, error) {
		reused := false
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.Addr+"/grpc.health.v1.Health/Check", strings.NewReader("{}"))
		if err != nil {
			return nil, false, err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			return nil, false, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return res, reused, fmt.Errorf("HTTP %d", res.StatusCode)
		}
		return res, reused, nil
	}
	serial := func(res *http.Response) int64 { return res.TLS.PeerCertificates[0].SerialNumber.Int64() }

	t.Run("ClientCertificateRequired", func(t *testing.T) {
		other := newCA(t, "another CA")
		for name, c := range map[string]*http.Client{
			"NoCertificate":  newClient(),
			"OtherCAsClient": newClient(other.clientCert(t, "app")),
		} {
			if res, _, err := health(c); err == nil {
				t.Errorf("%s: served %s", name, res.Proto)
			} else {
				t.Logf("%s: %v", name, err)
			}
		}
		status, resp := b.Call(t, d.Issuer.Token(t, appSubject, nil, time.Hour), "ListRoles", nil)
		if status != http.StatusOK {
			t.Errorf("ListRoles with a client certificate: HTTP %d %v", status, resp)
		}
	})

	t.Run("CertificateReloadOnSIGHUP", func(t *testing.T) {
		open := newClient(client)
		res, _, err := health(open)
		if err != nil || res.ProtoMajor != 2 || serial(res) != 1 {
			t.Fatalf("first call: %v, %v; want HTTP/2 with certificate 1", res, err)
		}
		ca.writeServerCert(t, 2, certFile, keyFile)
		b.Signal(t, syscall.SIGHUP)
		eventually(t, 20*time.Second, "new connections do not get the new certificate after SIGHUP", func() bool {
			res, _, err := health(newClient(client))
			return err == nil && serial(res) == 2
		})
		res, reused, err := health(open)
		if err != nil || !reused || serial(res) != 1 {
			t.Errorf("the connection opened before SIGHUP: %v, reused %v; want it to keep working with certificate 1", err, reused)
		}
		if strings.Contains(b.Logs(), "only take effect after a restart") {
			t.Errorf("the broker says the reload needs a restart")
		}
	})
}

// dial opens a raw TCP connection to the broker, closed when the test ends.
func dial(t *testing.T, b *harness.Broker) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(b.Addr, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readerConn reads through a bufio.Reader that may hold buffered bytes.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// closedWithin fails the test unless the server closes conn within limit of
// start (whatever it sends first, e.g. an error response, is discarded).
func closedWithin(t *testing.T, conn net.Conn, start time.Time, limit time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %s", time.Since(start).Round(time.Millisecond))
	}
	t.Logf("the server closed the connection after %s (%v)", time.Since(start).Round(time.Millisecond), err)
}

// testCA signs server and client certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
	mu   sync.Mutex
	next int64
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, next: 100,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) sign(t *testing.T, tmpl *x509.Certificate) (der []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// writeServerCert writes a certificate for 127.0.0.1 with serial and its
// key, replacing the files atomically.
func (ca *testCA) writeServerCert(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	der, key := ca.sign(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "credbroker"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
}

// clientCert returns a client certificate for cn.
func (ca *testCA) clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	ca.mu.Lock()
	ca.next++
	serial := ca.next
	ca.mu.Unlock()
	der, key := ca.sign(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
