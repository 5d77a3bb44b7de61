package main

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestCheckIDTokenFor(t *testing.T) {
	const iss, cid = "https://login.example.com/", "credbroker-cli"
	for name, tc := range map[string]struct {
		claims map[string]any
		want   string // "" for accepted
	}{
		"AudString":     {claims: map[string]any{"iss": iss, "aud": cid}},
		"AudArray":      {claims: map[string]any{"iss": iss, "aud": []any{"other", cid}}},
		"OtherIssuer":   {claims: map[string]any{"iss": "https://evil.example.com/", "aud": cid}, want: `from issuer "https://evil.example.com/"`},
		"IssuerNoSlash": {claims: map[string]any{"iss": strings.TrimSuffix(iss, "/"), "aud": cid}, want: "not \"" + iss},
		"NoIssuer":      {claims: map[string]any{"aud": cid}, want: `from issuer ""`},
		"OtherAudience": {claims: map[string]any{"iss": iss, "aud": []any{"other"}}, want: `audience [other] does not include the client "credbroker-cli"`},
		"NoAudience":    {claims: map[string]any{"iss": iss}, want: "does not include"},
		"AudNotString":  {claims: map[string]any{"iss": iss, "aud": []any{42.0}}, want: "does not include"},
	} {
		err := checkIDTokenFor(tc.claims, iss, cid)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

func TestDeviceError(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want string
	}{
		"Denied":      {&oauth2.RetrieveError{ErrorCode: "access_denied"}, "the login was denied at the provider (access_denied)"},
		"Expired":     {&oauth2.RetrieveError{ErrorCode: "expired_token", ErrorDescription: "too late"}, "expired before the login was approved: run credbroker login --device again (expired_token: too late)"},
		"NotAllowed":  {&oauth2.RetrieveError{ErrorCode: "unauthorized_client"}, "urn:ietf:params:oauth:grant-type:device_code"},
		"Unknown":     {&oauth2.RetrieveError{ErrorCode: "weird", Body: []byte(`{"error":"weird"}`)}, `"weird"`},
		"NotRetrieve": {errors.New("connection refused"), "connection refused"},
	} {
		if got := deviceError(tc.err).Error(); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want it to contain %q", name, got, tc.want)
		}
	}
}
