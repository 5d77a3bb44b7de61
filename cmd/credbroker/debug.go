package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/credbroker/credbroker/plugins"
)

// startDebug serves Go's profiler (net/http/pprof, under /debug/pprof/) on
// addr, which must be a loopback address: a goroutine dump or a heap profile
// shows what the process is doing and holds, so it is for whoever is already
// on the machine. It returns the address it listens on and a function that
// stops it. An empty addr serves nothing.
func startDebug(addr string, log *slog.Logger) (net.Addr, func(), error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--debug-listen: %q is not host:port, e.g. 127.0.0.1:6060", addr)
	}
	if !plugins.IsLoopback(host) {
		return nil, nil, fmt.Errorf("--debug-listen: %s is not a loopback address: the profiler shows what the process holds, so it listens on loopback only (e.g. 127.0.0.1:6060)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--debug-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug listener stopped", slog.String("error", err.Error()))
		}
	}()
	log.Info("serving the profiler", slog.String("addr", ln.Addr().String()), slog.String("path", "/debug/pprof/"))
	return ln.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
