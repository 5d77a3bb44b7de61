package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
)

// shutdownTimeout bounds how long calls in flight may finish once the
// program is told to stop.
const shutdownTimeout = 5 * time.Second

// Serve runs d as a backend program for the broker and exits the process;
// it is a program's whole main. It refuses to run (a one-line explanation on
// stderr, exit status 1) when the broker did not start it. On Linux it makes
// the process not dumpable (no other process of the user reads its
// environment or memory) and serves only connections whose SO_PEERCRED pid
// is its parent, the broker. It serves PluginService on the broker's socket, and returns only by exiting: with 0
// when the broker closes stdin or sends SIGTERM, with 1 when serving fails.
func Serve(d plugins.Driver) {
	os.Exit(run(d, os.Stdin, os.Stderr))
}

func run(d plugins.Driver, stdin io.Reader, stderr io.Writer) int {
	prog := filepath.Base(os.Args[0])
	if os.Getenv(ProtocolEnv) != ProtocolCookie {
		fmt.Fprintf(stderr, "%s: this is credbroker's %q backend as a program of its own: the broker starts it for a backend with `plugin: external` (see docs/plugins.md); it does not run by hand\n", prog, d.Name())
		return 1
	}
	// Before anything else: from here the backend's env is in memory.
	if err := protect(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	l, err := inheritedListener()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	l = brokerOnly(l)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, brokerGone := context.WithCancel(ctx)
	defer brokerGone()
	go func() {
		// The broker holds the other end of stdin: end of file is the
		// broker gone, whatever way it went.
		_, _ = io.Copy(io.Discard, stdin)
		brokerGone()
	}()
	if err := serve(ctx, l, d); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	return 0
}

// inheritedListener is the listening socket the broker passed as fd 3.
func inheritedListener() (net.Listener, error) {
	f := os.NewFile(ListenerFD, "credbroker-plugin-socket")
	if f == nil {
		return nil, fmt.Errorf("no listening socket as file descriptor %d", ListenerFD)
	}
	defer f.Close() // FileListener made its own copy
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("file descriptor %d is not a listening socket: %w", ListenerFD, err)
	}
	return l, nil
}

// serve serves PluginService for d on l until ctx ends, then lets calls in
// flight finish (for at most shutdownTimeout) and closes the plugin.
func serve(ctx context.Context, l net.Listener, d plugins.Driver) error {
	s := newServer(d)
	mux := http.NewServeMux()
	// No gzip: over a unix socket it only costs time on both sides.
	mux.Handle(pluginv1connect.NewPluginServiceHandler(s, connect.WithCompression("gzip", nil, nil)))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	var err error
	select {
	case err = <-served:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			_ = srv.Close()
		}
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = fmt.Errorf("serve: %w", serr)
		}
	}
	if cerr := s.close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close: %w", cerr))
	}
	return err
}
