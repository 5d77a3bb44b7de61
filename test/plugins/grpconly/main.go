// Command grpconly is a backend program for tests written without the SDK,
// as one in another language would be: it serves gRPC over HTTP/2 only (no
// Connect over HTTP/1.1), and answers only Handshake, ParseConnection (any
// section is valid), Open and Check. With
// -protocol N it answers the handshake with protocol version N, so a test
// can see the broker refuse a version it does not speak.
package main

import (
	"context"
	"flag"
	"net"
	"net/http"
	"os"

	"connectrpc.com/connect"

	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
)

type server struct {
	pluginv1connect.UnimplementedPluginServiceHandler
	protocol uint32
}

func (s server) Handshake(context.Context, *connect.Request[pluginv1.HandshakeRequest]) (*connect.Response[pluginv1.HandshakeResponse], error) {
	return connect.NewResponse(&pluginv1.HandshakeResponse{ProtocolVersion: s.protocol, Name: "grpconly", UsernameLimit: 63}), nil
}

func (server) ParseConnection(context.Context, *connect.Request[pluginv1.ParseConnectionRequest]) (*connect.Response[pluginv1.ParseConnectionResponse], error) {
	return connect.NewResponse(&pluginv1.ParseConnectionResponse{}), nil
}

func (server) Open(context.Context, *connect.Request[pluginv1.OpenRequest]) (*connect.Response[pluginv1.OpenResponse], error) {
	return connect.NewResponse(&pluginv1.OpenResponse{}), nil
}

func (server) Check(context.Context, *connect.Request[pluginv1.CheckRequest]) (*connect.Response[pluginv1.CheckResponse], error) {
	return connect.NewResponse(&pluginv1.CheckResponse{}), nil
}

func main() {
	protocol := flag.Uint("protocol", 1, "the protocol version to answer the handshake with")
	flag.Parse()
	if os.Getenv("CREDBROKER_PLUGIN_PROTOCOL") != "credbroker.plugin.v1.PluginService" {
		os.Stderr.WriteString("grpconly: not started by credbroker\n")
		os.Exit(1)
	}
	l, err := net.FileListener(os.NewFile(3, "socket"))
	if err != nil {
		os.Exit(1)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // and not HTTP/1.1
	mux := http.NewServeMux()
	mux.Handle(pluginv1connect.NewPluginServiceHandler(server{protocol: uint32(*protocol)}))
	_ = (&http.Server{Handler: mux, Protocols: &protocols}).Serve(l)
}
