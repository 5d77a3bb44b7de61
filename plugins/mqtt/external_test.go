package mqtt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/external"
	"github.com/credbroker/credbroker/secret"
)

// program builds cmd/credbroker-plugin-mqtt and returns its path and
// SHA-256.
func program(t *testing.T) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "credbroker-plugin-mqtt")
	var out bytes.Buffer
	cmd := exec.Command("go", "build", "-o", path, "github.com/credbroker/credbroker/cmd/credbroker-plugin-mqtt")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build credbroker-plugin-mqtt: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return path, hex.EncodeToString(h[:])
}

// outOfProcess is the MQTT backend as the program
// cmd/credbroker-plugin-mqtt, pinned by its SHA-256, with the admin
// password handed to it as MQTT_ADMIN_PASSWORD; closed when the test ends.
func outOfProcess(t *testing.T, b broker) (d plugins.Driver, connection string) {
	t.Helper()
	path, sum := program(t)
	ref, err := secret.ParseRef(b.passwordRef)
	if err != nil {
		t.Fatal(err)
	}
	sockets, err := os.MkdirTemp("", "cbmqtt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockets) })
	x, err := external.New(external.Config{
		Name:      "mqtt-program",
		Command:   []string{path},
		SHA256:    sum,
		Env:       map[string]secret.Ref{"MQTT_ADMIN_PASSWORD": ref},
		Logger:    slog.New(slog.DiscardHandler),
		SocketDir: sockets,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x, fmt.Sprintf("{url: %q, username: %q, password: env:MQTT_ADMIN_PASSWORD}", b.url, b.user)
}
