package mqtt_test

import (
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
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mqtt"
)

// tlsServerName is the only name the test server certificate holds, so
// reaching 127.0.0.1 needs server_name.
const tlsServerName = "mqtt.test"

// testPKI makes a CA and a server certificate it signed for tlsServerName,
// and returns the CA's PEM file and the server's certificate.
func testPKI(t *testing.T) (caFile string, pool *x509.CertPool, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "credbroker test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: tlsServerName}, DNSNames: []string{tlsServerName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return caFile, pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsProxy terminates TLS with cert on a loopback port and passes every
// connection on to the broker at target (host:port); it stops when the test
// ends. It returns its address.
func tlsProxy(t *testing.T, target string, cert tls.Certificate) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			open = append(open, in, out)
			mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			wg.Go(func() { pipe(out, in) })
			wg.Go(func() { pipe(in, out) })
		}
	})
	return l.Addr().String()
}

// TestTLS: over ssl:// with ca_file and server_name, the admin connection
// and issued credentials (mqtts:// URIs) work; without server_name or
// ca_file, the server's certificate is refused.
func TestTLS(t *testing.T) {
	b := testBroker(t)
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	caFile, pool, cert := testPKI(t)
	addr := tlsProxy(t, u.Host, cert)

	section := func(tlsPart string) string {
		return fmt.Sprintf("{url: %q, username: %q, password: %q, tls: %s}", "ssl://"+addr, b.user, b.passwordRef, tlsPart)
	}
	for name, tlsPart := range map[string]string{
		"NoServerName": fmt.Sprintf("{ca_file: %q}", caFile),
		"SystemRoots":  fmt.Sprintf("{server_name: %q}", tlsServerName),
	} {
		conn, err := mqtt.Driver{}.ParseConnection(decoder(section(tlsPart)))
		if err != nil {
			t.Fatal(err)
		}
		var certErr *tls.CertificateVerificationError
		_, err = mqtt.Driver{}.Open(t.Context(), conn)
		if !errors.As(err, &certErr) || plugins.IsUnavailable(err) {
			t.Errorf("%s: Open = %v, want a certificate error, not unavailable", name, err)
		}
	}

	conn, err := mqtt.Driver{}.ParseConnection(decoder(section(fmt.Sprintf("{ca_file: %q, server_name: %q}", caFile, tlsServerName))))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := mqtt.Driver{}.Open(t.Context(), conn)
	if err != nil {
		t.Fatalf("Open over TLS: %v", err)
	}
	p := tp.(*mqtt.Plugin)
	t.Cleanup(func() { _ = p.Close() })
	if w := p.Warnings(t.Context()); len(w) != 0 {
		t.Errorf("Warnings = %q, want none", w)
	}
	base := "cbtest/" + unique()
	cred, _ := create(t, p, parseRole(t, topicRole(base)))
	if !strings.HasPrefix(cred.URI.Reveal(), "mqtts://") || cred.Fields["tls"] != "true" || cred.Env["MQTT_URL"].Reveal() != cred.URI.Reveal() {
		t.Errorf("the credential over TLS: URI scheme %q, Fields[tls] = %q", strings.SplitN(cred.URI.Reveal(), ":", 2)[0], cred.Fields["tls"])
	}

	// A workload logs in with the URI (mqtts:// is TLS to paho) and the CA.
	ru, err := url.Parse(cred.URI.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := ru.User.Password()
	c := &client{lost: make(chan struct{}), msgs: make(chan paho.Message, 10)}
	opts := paho.NewClientOptions().AddBroker(ru.Scheme + "://" + ru.Host).SetClientID("cbtest-" + unique()).
		SetUsername(ru.User.Username()).SetPassword(pw).SetProtocolVersion(4).SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: tlsServerName, MinVersion: tls.VersionTLS12}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m })
	c.Client = paho.NewClient(opts)
	if err := wait(t.Context(), c.Connect()); err != nil {
		t.Fatalf("login over TLS: %v", plugins.Sanitize(err, cred.Password))
	}
	defer c.Disconnect(0)
	if err := c.mustSubscribe(t.Context(), base+"/tls"); err != nil {
		t.Fatal(err)
	}
	if err := c.publish(t.Context(), base+"/tls", "over tls"); err != nil {
		t.Fatal(err)
	}
	if err := c.until(t.Context(), base+"/tls", "over tls", nil); err != nil {
		t.Fatal(err)
	}
}

// firstBytes runs client (argv after the command, options files in
// XDG_CONFIG_HOME) against a listener that answers nothing, and returns
// what the client sends first.
func firstBytes(t *testing.T, c plugins.Client, env map[string]string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	env["MQTT_HOST"], env["MQTT_PORT"] = host, port
	cmd := clientCommand(t, c, env, "-t", "x", "-W", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	n, err := io.ReadAtLeast(conn, buf, 1)
	if err != nil {
		t.Fatalf("%s sent nothing: %v", c.Command, err)
	}
	return buf[:n]
}

// clientCommand is what `credbroker connect` runs for c: its Args, then
// extra, with its Files in a private XDG_CONFIG_HOME.
func clientCommand(t *testing.T, c plugins.Client, env map[string]string, extra ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath(c.Command)
	if err != nil {
		if os.Getenv("CREDBROKER_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s is not on PATH", c.Command)
		}
		t.Skipf("%s is not on PATH", c.Command)
	}
	dir := t.TempDir()
	for name, text := range c.Files(env) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(path, append(c.Args(env), extra...)...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir)
	return cmd
}

// TestClientTLS: mosquitto_sub, run as `credbroker connect` runs it, sends
// a TLS ClientHello, not its CONNECT with the password, to the broker of a
// TLS credential; over the TLS proxy to the test broker it logs in and
// receives. The plain credential's CONNECT, password and all, shows the
// probe sees clear text when there is some.
func TestClientTLS(t *testing.T) {
	client := mqtt.Driver{}.Describe().Clients[0]
	env := func(tlsOn string) map[string]string {
		return map[string]string{"MQTT_TLS": tlsOn, "MQTT_USERNAME": "cb_probe", "MQTT_PASSWORD": "pw-probe-42"}
	}
	if got := firstBytes(t, client, env("0")); got[0] != 0x10 || !strings.Contains(string(got), "pw-probe-42") {
		t.Fatalf("plain text: the first bytes are %q, want an MQTT CONNECT holding the password", got)
	}
	for _, tlsOn := range []string{"1", ""} {
		got := firstBytes(t, client, env(tlsOn))
		if got[0] != 0x16 || strings.Contains(string(got), "pw-probe-42") {
			t.Errorf("MQTT_TLS=%q: the first bytes are %q, want a TLS handshake record without the password", tlsOn, got)
		}
	}

	// A real login over TLS, with the credential the plugin issues.
	b := testBroker(t)
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, cert := testPKI(t)
	addr := tlsProxy(t, u.Host, cert)
	conn, err := mqtt.Driver{}.ParseConnection(decoder(fmt.Sprintf("{url: %q, username: %q, password: %q, tls: {ca_file: %q, server_name: %q}}",
		"mqtts://"+addr, b.user, b.passwordRef, caFile, tlsServerName)))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := mqtt.Driver{}.Open(t.Context(), conn)
	if err != nil {
		t.Fatalf("Open over TLS: %v", err)
	}
	p := tp.(*mqtt.Plugin)
	t.Cleanup(func() { _ = p.Close() })
	base := "cbtest/" + unique()
	cred, _ := create(t, p, parseRole(t, topicRole(base)))
	credEnv := map[string]string{}
	for k, v := range cred.Env {
		credEnv[k] = v.Reveal()
	}
	if credEnv["MQTT_TLS"] != "1" {
		t.Errorf("the TLS credential's MQTT_TLS = %q, want 1", credEnv["MQTT_TLS"])
	}
	if files := client.Files(credEnv); files[client.Command] != "-P "+cred.Password.Reveal()+"\n" {
		t.Error("the options file does not hold the credential's password")
	}
	// The test certificate names only mqtt.test, and mosquitto_sub checks
	// -h against it: --insecure skips that check, not the CA's.
	var out strings.Builder
	cmd := clientCommand(t, client, credEnv, "--cafile", caFile, "--insecure", "-t", base+"/tls", "-C", "1", "-W", "10")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	pub, err := connect(t.Context(), b.url, cred.Username, cred.Password) // the same broker, past the proxy
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(0)
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil || strings.TrimSpace(out.String()) != "over tls" {
				t.Fatalf("mosquitto_sub over TLS: %v, output %q", err, out.String())
			}
			return
		case <-time.After(200 * time.Millisecond):
			_ = pub.publish(t.Context(), base+"/tls", "over tls")
		}
		if i > 50 {
			_ = cmd.Process.Kill()
			t.Fatalf("mosquitto_sub over TLS received nothing: %q", out.String())
		}
	}
}
