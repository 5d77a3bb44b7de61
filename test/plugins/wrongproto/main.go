// Command wrongproto is a backend program for tests that answers the
// handshake with protocol version 99, which no broker speaks, so the test
// sees the broker refuse it.
package main

import (
	"context"
	"net"
	"net/http"
	"os"

	"connectrpc.com/connect"

	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
)

type server struct {
	pluginv1connect.UnimplementedPluginServiceHandler
}

func (server) Handshake(context.Context, *connect.Request[pluginv1.HandshakeRequest]) (*connect.Response[pluginv1.HandshakeResponse], error) {
	return connect.NewResponse(&pluginv1.HandshakeResponse{ProtocolVersion: 99, Name: "wrongproto", UsernameLimit: 63}), nil
}

func main() {
	l, err := net.FileListener(os.NewFile(3, "socket"))
	if err != nil {
		os.Exit(1)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	mux := http.NewServeMux()
	mux.Handle(pluginv1connect.NewPluginServiceHandler(server{}))
	_ = (&http.Server{Handler: mux, Protocols: &protocols}).Serve(l)
}
