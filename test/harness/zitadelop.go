package harness

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// ZitadelOIDCVersion is the version of github.com/zitadel/oidc/v3 whose
// example OpenID Provider (example/server) the device login tests run; it is
// the require of test/zitadelop/go.mod, built into
// .bin/zitadel-op-<version>-<hash of test/zitadelop>.
const ZitadelOIDCVersion = "v3.52.0"

// ZitadelOP is the example OpenID Provider of github.com/zitadel/oidc/v3
// (test/zitadelop) started for a test on a loopback port, killed when the
// test ends. It has a public client, ZitadelClientID, allowed the device
// authorization grant and refresh tokens, and the example's in-memory
// users: ZitadelUser / ZitadelPassword is the one with ID ZitadelSubject.
type ZitadelOP struct {
	// Issuer is the issuer URL, http://127.0.0.1:PORT/.
	Issuer string
	logs   *syncBuffer
}

// The example OP's public device client and one of its users.
const (
	ZitadelClientID = "credbroker-cli"
	ZitadelUser     = "test-user2"
	ZitadelPassword = "verysecure"
	ZitadelSubject  = "id2"
)

var zitadelBin struct {
	once sync.Once
	path string
	err  error
}

// zitadelBinary builds test/zitadelop into .bin/zitadel-op-<version>-<hash> once
// (a separate module, so its dependencies stay out of credbroker's go.mod;
// about a minute cold), or skips the test when it cannot and
// CREDBROKER_REQUIRE_SERVICES is not 1.
func zitadelBinary(t testing.TB) string {
	t.Helper()
	zitadelBin.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			zitadelBin.err = err
			return
		}
		// Cached by the library's version and the wrapper's source, so an
		// edit to test/zitadelop builds anew.
		h := sha256.New()
		for _, f := range []string{"main.go", "go.mod", "go.sum"} {
			b, err := os.ReadFile(filepath.Join(root, "test", "zitadelop", f))
			if err != nil {
				zitadelBin.err = err
				return
			}
			h.Write(b)
		}
		zitadelBin.path = filepath.Join(root, ".bin", fmt.Sprintf("zitadel-op-%s-%x", ZitadelOIDCVersion, h.Sum(nil)[:6]))
		if _, err := os.Stat(zitadelBin.path); err == nil {
			return
		}
		if err := os.MkdirAll(filepath.Dir(zitadelBin.path), 0o755); err != nil {
			zitadelBin.err = err
			return
		}
		tmp := fmt.Sprintf("%s.%d.tmp", zitadelBin.path, os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, ".")
		cmd.Dir = filepath.Join(root, "test", "zitadelop")
		if out, err := cmd.CombinedOutput(); err != nil {
			zitadelBin.err = fmt.Errorf("build test/zitadelop: %v\n%s", err, out)
			return
		}
		zitadelBin.err = os.Rename(tmp, zitadelBin.path)
	})
	if zitadelBin.err != nil {
		if os.Getenv(plugintest.RequireServicesEnv) == "1" {
			t.Fatalf("harness: zitadel example OP: %v", zitadelBin.err)
		}
		t.Skipf("harness: zitadel example OP: %v", zitadelBin.err)
	}
	return zitadelBin.path
}

// StartZitadelOP starts the example OP. deviceLifetime, when not zero,
// shortens the life of its device codes (the example's is 5m).
func StartZitadelOP(t testing.TB, deviceLifetime time.Duration) *ZitadelOP {
	t.Helper()
	bin := zitadelBinary(t)
	z := &ZitadelOP{logs: &syncBuffer{}}
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-client-id", ZitadelClientID, "-device-lifetime", deviceLifetime.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = z.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: start the zitadel example OP: %v", err)
	}
	exited := make(chan struct{})
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		_, _ = io.Copy(z.logs, stdout)
	}()
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() || os.Getenv(LogsEnv) == "1" {
			t.Logf("harness: zitadel example OP logs:\n%s", tail(z.logs.String(), 200))
		}
	})
	select {
	case line := <-first:
		issuer, ok := strings.CutPrefix(line, "issuer ")
		if !ok {
			t.Fatalf("harness: the zitadel example OP said %q, not its issuer\n%s", line, z.logs.String())
		}
		z.Issuer = issuer
	case <-time.After(readyTimeout):
		t.Fatalf("harness: the zitadel example OP did not start\n%s", z.logs.String())
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		res, err := http.Get(z.Issuer + ".well-known/openid-configuration")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return z
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: the zitadel example OP's discovery did not answer: %v\n%s", err, z.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Device plays the person at the example OP's device pages, as a browser
// would: it opens verificationURI (the one login printed, with the code in
// it or not), submits userCode with the user's name and password, and
// approves (allow) or denies the request. It returns the last page's text.
func (z *ZitadelOP) Device(t testing.TB, verificationURI, userCode, user, password string, allow bool) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	do := func(method, u string, form url.Values) string {
		t.Helper()
		var res *http.Response
		var err error
		if method == http.MethodGet {
			res, err = c.Get(u)
		} else {
			res, err = c.PostForm(u, form)
		}
		if err != nil {
			t.Fatalf("harness: device page %s: %v", u, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("harness: device page %s: HTTP %d %s", u, res.StatusCode, b)
		}
		return string(b)
	}
	page := do(http.MethodGet, verificationURI, nil)
	if !strings.Contains(page, "user_code") {
		t.Fatalf("harness: %s is not the example OP's device page:\n%s", verificationURI, page)
	}
	if strings.Contains(verificationURI, "user_code=") && !strings.Contains(page, userCode) {
		t.Fatalf("harness: %s does not carry the user code %s:\n%s", verificationURI, userCode, page)
	}
	base := strings.TrimSuffix(z.Issuer, "/")
	page = do(http.MethodPost, base+"/device/login", url.Values{"user_code": {userCode}, "username": {user}, "password": {password}})
	if !strings.Contains(page, "Welcome back") {
		t.Fatalf("harness: device login as %s was refused:\n%s", user, page)
	}
	action := "denied"
	if allow {
		action = "allowed"
	}
	return do(http.MethodPost, base+"/device/confirm", url.Values{"action": {action}})
}
