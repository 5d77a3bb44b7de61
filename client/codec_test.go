package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// whoAmIServer answers WhoAmI with the subject "app".
type whoAmIServer struct {
	credbrokerv1connect.UnimplementedCredentialServiceHandler
}

func (whoAmIServer) WhoAmI(context.Context, *connect.Request[credbrokerv1.WhoAmIRequest]) (*connect.Response[credbrokerv1.WhoAmIResponse], error) {
	return connect.NewResponse(&credbrokerv1.WhoAmIResponse{Subject: "app"}), nil
}

// TestClientSendsProtobuf: the client (and so the CLI, which calls through
// it) speaks the Connect protocol with the binary protobuf codec, which
// costs both sides less than JSON, and sends the bearer token.
func TestClientSendsProtobuf(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var contentType, authorization string
	path, handler := credbrokerv1connect.NewCredentialServiceHandler(whoAmIServer{})
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		contentType, authorization = r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		mu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	const token = "aGVhZGVy.cGF5bG9hZA.c2ln"
	c := client.New(srv.URL, client.StaticToken(token))
	resp, err := c.WhoAmI(t.Context(), connect.NewRequest(&credbrokerv1.WhoAmIRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Msg.GetSubject(); got != "app" {
		t.Errorf("subject %q, want app", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if contentType != "application/proto" {
		t.Errorf("Content-Type %q, want application/proto", contentType)
	}
	if authorization != "Bearer "+token {
		t.Errorf("Authorization %q, want the bearer token", authorization)
	}
}
