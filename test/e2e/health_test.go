package e2e_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/test/harness"
)

func TestHealthAndReflection(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "10m", "1h", "metrics_listen: "+harness.MetricsListenPlaceholder+"\n")
	// HTTP/2 without TLS (h2c), as grpcurl and gRPC clients speak it.
	h2c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)

	t.Run("Health", func(t *testing.T) {
		for name, hc := range map[string]*grpchealth.Client{
			"Connect": grpchealth.NewClient(http.DefaultClient, b.Addr),
			"GRPC":    grpchealth.NewClient(h2c, b.Addr, connect.WithGRPC()),
			"GRPCWeb": grpchealth.NewClient(http.DefaultClient, b.Addr, connect.WithGRPCWeb()),
		} {
			for _, service := range []string{"", "credbroker.v1.CredentialService"} {
				resp, err := hc.Check(t.Context(), &grpchealth.CheckRequest{Service: service})
				if err != nil || resp.Status != grpchealth.StatusServing {
					t.Errorf("%s: Check(%q) = %v, %v; want SERVING", name, service, resp, err)
				}
			}
			_, err := hc.Check(t.Context(), &grpchealth.CheckRequest{Service: "no.such.Service"})
			if connect.CodeOf(err) != connect.CodeNotFound {
				t.Errorf("%s: Check of an unknown service: %v, want not_found", name, err)
			}
		}
		// Health needs no token, like a load balancer's probe: the raw
		// Connect JSON call answers too.
		status, resp := b.CallPath(t, "", "/grpc.health.v1.Health/Check", map[string]any{})
		if status != http.StatusOK || resp["status"] != "SERVING_STATUS_SERVING" {
			t.Errorf("raw health check: HTTP %d %v", status, resp)
		}
	})

	t.Run("Reflection", func(t *testing.T) {
		stream := grpcreflect.NewClient(h2c, b.Addr, connect.WithGRPC()).NewStream(t.Context())
		defer stream.Close()
		names, err := stream.ListServices()
		if err != nil {
			t.Fatalf("ListServices: %v", err)
		}
		var services []string
		for _, n := range names {
			services = append(services, string(n))
		}
		for _, want := range []string{"credbroker.v1.CredentialService", "grpc.health.v1.Health"} {
			if !slices.Contains(services, want) {
				t.Errorf("reflection lists %v, without %s", services, want)
			}
		}
		files, err := stream.FileContainingSymbol("credbroker.v1.CredentialService")
		if err != nil {
			t.Fatalf("FileContainingSymbol: %v", err)
		}
		var methods []string
		for _, f := range files {
			for _, s := range f.GetService() {
				if s.GetName() == "CredentialService" {
					for _, m := range s.GetMethod() {
						methods = append(methods, m.GetName())
					}
				}
			}
		}
		for _, want := range []string{"IssueCredential", "RenewLease", "RevokeLease", "GetLease", "ListLeases", "ListRoles"} {
			if !slices.Contains(methods, want) {
				t.Errorf("reflection describes CredentialService with %v, without %s", methods, want)
			}
		}
	})

	t.Run("GRPCCredentialService", func(t *testing.T) {
		// The API over real gRPC (h2c), as grpcurl would call it.
		token := d.Issuer.Token(t, appSubject, nil, time.Hour)
		resp, err := b.ConnectClient(token, h2c, connect.WithGRPC()).ListRoles(t.Context(), connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
		if err != nil || len(resp.Msg.GetRoles()) != 1 {
			t.Errorf("ListRoles over gRPC: %v, %v", resp, err)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		// On metrics_listen only; the API port has no /metrics.
		res, err := http.Get(b.MetricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body strings.Builder
		_, _ = io.Copy(&body, res.Body)
		if res.StatusCode != http.StatusOK || !strings.Contains(body.String(), "credbroker_") {
			t.Errorf("/metrics: HTTP %d without credbroker_ metrics", res.StatusCode)
		}
	})
}
