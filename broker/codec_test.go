package broker

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// TestCodecsAndCompression: the server answers Connect calls in the binary
// protobuf codec and in JSON, and sends an answer smaller than
// compressMinBytes uncompressed even to a client that accepts gzip.
func TestCodecsAndCompression(t *testing.T) {
	verifyNoLeaks(t)
	b := startBroker(t)
	token := b.token(t, "app")
	url := b.http.URL + "/" + credbrokerv1connect.CredentialServiceName + "/WhoAmI"
	tests := map[string]struct {
		contentType string
		body        []byte
		decode      func(t *testing.T, body []byte) string // the subject
	}{
		"Proto": {
			contentType: "application/proto",
			decode: func(t *testing.T, body []byte) string {
				var m credbrokerv1.WhoAmIResponse
				if err := proto.Unmarshal(body, &m); err != nil {
					t.Fatalf("not a WhoAmIResponse: %v", err)
				}
				return m.GetSubject()
			},
		},
		"JSON": {
			contentType: "application/json",
			body:        []byte("{}"),
			decode: func(t *testing.T, body []byte) string {
				if !bytes.Contains(body, []byte(`"subject":"app"`)) {
					t.Fatalf("answer %s has no subject app", body)
				}
				return "app"
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			req.Header.Set("Authorization", "Bearer "+token)
			// Set by hand, so the transport neither adds nor undoes it.
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := b.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tc.contentType) {
				t.Errorf("Content-Type %q, want %s", got, tc.contentType)
			}
			if got := resp.Header.Get("Content-Encoding"); got != "" {
				t.Errorf("a %d-byte answer came with Content-Encoding %q, want none below %d bytes", len(body), got, compressMinBytes)
			}
			if got := tc.decode(t, body); got != "app" {
				t.Errorf("subject %q, want app", got)
			}
		})
	}
}
