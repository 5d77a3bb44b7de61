package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func TestTokenSources(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first\n")
	if tok, err := client.TokenFile(file).Token(ctx); err != nil || tok != "first" {
		t.Fatalf("TokenFile = %q, %v", tok, err)
	}
	write("rotated")
	if tok, err := client.TokenFile(file).Token(ctx); err != nil || tok != "rotated" {
		t.Fatalf("TokenFile after rotation = %q, %v", tok, err)
	}
	write("")
	if _, err := client.TokenFile(file).Token(ctx); err == nil {
		t.Error("an empty token file was accepted")
	}
	if tok, err := client.TokenCommand("printf ' from-command\\n'").Token(ctx); err != nil || tok != "from-command" {
		t.Errorf("TokenCommand = %q, %v", tok, err)
	}
	if _, err := client.TokenCommand("echo oops >&2; exit 3").Token(ctx); err == nil {
		t.Error("a failing token command was accepted")
	}
	if _, err := client.StaticToken("  ").Token(ctx); err == nil {
		t.Error("a blank static token was accepted")
	}
}

// A workload asks for a credential at start-up and keeps its lease renewed.
func Example() {
	ctx := context.Background()
	c := client.New(client.AddrFromEnv(), client.TokenFile("/var/run/secrets/tokens/credbroker"))
	resp, err := c.IssueCredential(ctx, connect.NewRequest(&credbrokerv1.IssueCredentialRequest{
		Role: "orders-readonly",
		Ttl:  durationpb.New(15 * time.Minute),
	}))
	if err != nil {
		fmt.Println(err) // e.g. permission_denied: no policy grants role "orders-readonly" to …
		return
	}
	dsn := resp.Msg.GetCredential().GetUri() // connect with it; never log it
	_ = dsn
	_, err = c.RenewLease(ctx, connect.NewRequest(&credbrokerv1.RenewLeaseRequest{LeaseId: resp.Msg.GetLease().GetId()}))
	if err != nil {
		fmt.Println(err)
	}
}
