// Command isolation checks what a process of the broker's user that is not
// the broker can do to a plugin program. Run as `isolation PROGRAM`, it plays
// the broker: it starts PROGRAM as the broker does (the cookie, a listening
// socket as fd 3, stdin held open), makes the handshake over the socket
// itself, then runs itself as `isolation -sibling PID SOCKET`: a process of
// the same user, not the program's parent, which tries to read the program's
// /proc/PID/environ and to make the handshake. It prints one line per check:
//
//	parent handshake: ok | failed: …
//	program name: the name in /proc/PID/comm
//	sibling environ: read | refused: …
//	sibling handshake: answered | refused: …
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/plugins/sdk"
	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "-sibling":
		sibling(os.Args[2], os.Args[3])
	case len(os.Args) == 2:
		err = parent(os.Args[1])
	default:
		err = errors.New("usage: isolation PROGRAM | isolation -sibling PID SOCKET")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolation:", err)
		os.Exit(1)
	}
}

func parent(program string) error {
	dir, err := os.MkdirTemp("", "credbroker-isolation-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "plugin.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return err
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	if err != nil {
		return err
	}
	// As the broker does: run the open file, which names the process "4".
	exe, err := os.Open(program)
	if err != nil {
		return err
	}
	cmd := exec.Command(program)
	cmd.Path = "/proc/self/fd/4"
	cmd.Env = []string{sdk.ProtocolEnv + "=" + sdk.ProtocolCookie, sdk.SocketEnv + "=" + sock, "ISOLATION_SECRET=s3cret"}
	cmd.ExtraFiles = []*os.File{f, exe}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	_ = f.Close()
	_ = exe.Close()
	_ = l.Close()
	defer func() {
		_ = stdin.Close() // the program exits on end of file
		_ = cmd.Wait()
	}()

	// Once the handshake is answered, the program is serving: past the
	// point where it protects itself.
	var hsErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if hsErr = handshake(sock); hsErr == nil {
			break
		}
	}
	if hsErr != nil {
		fmt.Printf("parent handshake: failed: %v\n", hsErr)
		return nil
	}
	fmt.Println("parent handshake: ok")

	sib := exec.Command(os.Args[0], "-sibling", fmt.Sprint(cmd.Process.Pid), sock)
	sib.Stdout, sib.Stderr = os.Stdout, os.Stderr
	return sib.Run()
}

func sibling(pid, sock string) {
	if comm, err := os.ReadFile("/proc/" + pid + "/comm"); err == nil {
		fmt.Printf("program name: %s", comm)
	}
	b, err := os.ReadFile("/proc/" + pid + "/environ")
	switch {
	case err != nil:
		fmt.Printf("sibling environ: refused: %v\n", err)
	case strings.Contains(string(b), "ISOLATION_SECRET=s3cret"):
		fmt.Println("sibling environ: read")
	default:
		fmt.Printf("sibling environ: refused: read %d bytes without the secret\n", len(b))
	}
	if err := handshake(sock); err != nil {
		fmt.Printf("sibling handshake: refused: %v\n", err)
	} else {
		fmt.Println("sibling handshake: answered")
	}
}

// handshake makes the broker's first call on the socket.
func handshake(sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	c := pluginv1connect.NewPluginServiceClient(&http.Client{Transport: tr}, "http://plugin", connect.WithGRPC())
	_, err := c.Handshake(ctx, connect.NewRequest(&pluginv1.HandshakeRequest{ProtocolVersions: []uint32{sdk.ProtocolVersion}}))
	return err
}
