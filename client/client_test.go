package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	const first, rotated = "aGVhZGVy.cGF5bG9hZA.c2ln", "aGVhZGVy.cGF5bG9hZA.c2lnMg"
	file := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(first + "\n")
	if tok, err := client.TokenFile(file).Token(ctx); err != nil || tok != first {
		t.Fatalf("TokenFile = %q, %v", tok, err)
	}
	write(rotated)
	if tok, err := client.TokenFile(file).Token(ctx); err != nil || tok != rotated {
		t.Fatalf("TokenFile after rotation = %q, %v", tok, err)
	}
	write("")
	var te *client.TokenError
	if _, err := client.TokenFile(file).Token(ctx); !errors.As(err, &te) || te.Source != "token file "+file {
		t.Errorf("an empty token file: %v, want a TokenError naming the file", err)
	}
	if tok, err := client.TokenCommand("printf ' %s\\n' " + first).Token(ctx); err != nil || tok != first {
		t.Errorf("TokenCommand = %q, %v", tok, err)
	}
	if _, err := client.TokenCommand("echo oops >&2; exit 3").Token(ctx); err == nil {
		t.Error("a failing token command was accepted")
	}
	if _, err := client.StaticToken("  ").Token(ctx); !errors.As(err, &te) {
		t.Errorf("a blank static token: %v, want a TokenError", err)
	}
}

func TestCheckToken(t *testing.T) {
	t.Parallel()
	const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_0"
	for name, tc := range map[string]struct {
		raw, want, reason string
	}{
		"Plain":            {raw: jwt, want: jwt},
		"TrailingNewline":  {raw: jwt + "\n", want: jwt},
		"CRLF":             {raw: jwt + "\r\n", want: jwt},
		"SpacesAround":     {raw: " \t" + jwt + "  ", want: jwt},
		"Empty":            {raw: " \n", reason: "is empty"},
		"BearerPrefix":     {raw: "Bearer " + jwt, reason: "has whitespace inside it (at byte 6"},
		"TwoLines":         {raw: jwt + "\n" + jwt, reason: "has a line break inside it"},
		"ControlCharacter": {raw: jwt[:5] + "\x00" + jwt[5:], reason: "has a control character inside it"},
		"TwoParts":         {raw: "a.b", reason: "has 2 part(s)"},
		"FourParts":        {raw: jwt + ".d", reason: "has 4 part(s)"},
		"Opaque":           {raw: "ya29.a0AfH6SM", reason: "has 2 part(s)"},
		"EmptyPayload":     {raw: "a..c", reason: "its payload is empty"},
		"EmptySignature":   {raw: "a.b.", reason: "its signature is empty"},
		"Padding":          {raw: "a.b=.c", reason: `its payload has "="`},
		"StdBase64":        {raw: "a.b.c+/", reason: `its signature has "+"`},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := client.CheckToken("SRC", tc.raw)
			if tc.reason == "" {
				if err != nil || got != tc.want {
					t.Fatalf("CheckToken = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var te *client.TokenError
			if !errors.As(err, &te) || te.Source != "SRC" || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("CheckToken: %v; want a TokenError from SRC that says %q", err, tc.reason)
			}
			if !strings.HasPrefix(err.Error(), "the identity token from SRC ") {
				t.Errorf("the message %q does not start by naming the source", err)
			}
		})
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
