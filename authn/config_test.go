package authn_test

import (
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/authn"
)

func TestIssuerConfigValidate(t *testing.T) {
	t.Parallel()
	valid := func(edit func(*authn.IssuerConfig)) authn.IssuerConfig {
		c := authn.IssuerConfig{
			Name:      "k8s-prod",
			Issuer:    "https://kubernetes.default.svc",
			Audiences: []string{"credbroker"},
			JWKSURL:   "https://kubernetes.default.svc/openid/v1/jwks",
		}
		if edit != nil {
			edit(&c)
		}
		return c
	}

	tests := map[string]struct {
		cfg  authn.IssuerConfig
		want []string // each error must start with the corresponding entry; nil: valid
	}{
		"JWKSURL": {cfg: valid(nil)},
		"JWKSFile": {cfg: valid(func(c *authn.IssuerConfig) {
			c.JWKSURL, c.JWKSFile = "", "/etc/credbroker/k8s.jwks.json"
		})},
		"Discovery": {cfg: valid(func(c *authn.IssuerConfig) {
			c.JWKSURL, c.Issuer, c.Discovery = "", "https://accounts.example.com", true
		})},
		"AllAlgorithms": {cfg: valid(func(c *authn.IssuerConfig) {
			c.Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
		})},
		"LoopbackHTTP":   {cfg: valid(func(c *authn.IssuerConfig) { c.JWKSURL = "http://127.0.0.1:8080/jwks" })},
		"LocalhostHTTP":  {cfg: valid(func(c *authn.IssuerConfig) { c.JWKSURL = "http://localhost:8080/jwks" })},
		"IPv6Loopback":   {cfg: valid(func(c *authn.IssuerConfig) { c.JWKSURL = "http://[::1]:8080/jwks" })},
		"NonURLIssuer":   {cfg: valid(func(c *authn.IssuerConfig) { c.Issuer = "spiffe://example.org" })},
		"ManyAudiences":  {cfg: valid(func(c *authn.IssuerConfig) { c.Audiences = []string{"credbroker", "sts.amazonaws.com"} })},
		"DottedName":     {cfg: valid(func(c *authn.IssuerConfig) { c.Name = "corp.oidc_v2" })},
		"LoopbackDiscov": {cfg: valid(func(c *authn.IssuerConfig) { c.JWKSURL, c.Issuer, c.Discovery = "", "http://127.0.0.1:5556/dex", true })},

		"Login": {cfg: valid(func(c *authn.IssuerConfig) {
			c.Audiences = append(c.Audiences, "cli")
			c.Login = &authn.LoginConfig{ClientID: "cli", Scopes: []string{"openid", "email"}}
		})},
		"LoginNoClientID": {cfg: valid(func(c *authn.IssuerConfig) { c.Login = &authn.LoginConfig{} }),
			want: []string{"login.client_id: is required"}},
		"LoginClientNotAudience": {cfg: valid(func(c *authn.IssuerConfig) { c.Login = &authn.LoginConfig{ClientID: "cli"} }),
			want: []string{`login.client_id: "cli" is not one of audiences ["credbroker"]`}},
		"LoginNoOpenID": {cfg: valid(func(c *authn.IssuerConfig) {
			c.Audiences = append(c.Audiences, "cli")
			c.Login = &authn.LoginConfig{ClientID: "cli", Scopes: []string{"email"}}
		}), want: []string{"login.scopes: [\"email\"] has no openid"}},
		"LoginNonURLIssuer": {cfg: valid(func(c *authn.IssuerConfig) {
			c.Issuer, c.Audiences = "spiffe://example.org", append(c.Audiences, "cli")
			c.Login = &authn.LoginConfig{ClientID: "cli"}
		}), want: []string{"login: needs the OIDC discovery document of issuer"}},

		"NoName":       {cfg: valid(func(c *authn.IssuerConfig) { c.Name = "" }), want: []string{"name: is required"}},
		"BadName":      {cfg: valid(func(c *authn.IssuerConfig) { c.Name = "k8s prod" }), want: []string{"name: "}},
		"NoIssuer":     {cfg: valid(func(c *authn.IssuerConfig) { c.Issuer = "" }), want: []string{"issuer: is required"}},
		"IssuerSpaces": {cfg: valid(func(c *authn.IssuerConfig) { c.Issuer = " https://x.test" }), want: []string{"issuer: "}},
		"NoAudiences": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.Audiences = nil }),
			want: []string{"audiences: at least one audience is required"},
		},
		"EmptyAudience": {cfg: valid(func(c *authn.IssuerConfig) { c.Audiences = []string{"credbroker", " "} }), want: []string{"audiences: entry 1 is empty"}},
		"NoKeySource": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.JWKSURL = "" }),
			want: []string{"jwks_url: no key source"},
		},
		"FileAndURL": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.JWKSFile = "/k.json" }),
			want: []string{"jwks_url: conflicts with jwks_file"},
		},
		"URLAndDiscovery": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.Discovery = true }),
			want: []string{"discovery: conflicts with jwks_url"},
		},
		"PlainHTTPURL": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.JWKSURL = "http://idp.example.com/jwks" }),
			want: []string{"jwks_url: " + `"http://idp.example.com/jwks" must use https`},
		},
		"RelativeURL": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.JWKSURL = "/openid/v1/jwks" }),
			want: []string{"jwks_url: "},
		},
		"FTPURL": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.JWKSURL = "ftp://idp.example.com/jwks" }),
			want: []string{"jwks_url: "},
		},
		"URLWithCredentials": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.JWKSURL = "https://user:hunter2@idp.example.com/jwks" }),
			want: []string{"jwks_url: "},
		},
		"DiscoveryNeedsURLIssuer": {
			cfg:  valid(func(c *authn.IssuerConfig) { c.JWKSURL, c.Issuer, c.Discovery = "", "kubernetes", true }),
			want: []string{"issuer: discovery needs an issuer URL"},
		},
		"DiscoveryPlainHTTP": {
			cfg: valid(func(c *authn.IssuerConfig) {
				c.JWKSURL, c.Issuer, c.Discovery = "", "http://accounts.example.com", true
			}),
			want: []string{"issuer: "},
		},
		"AlgNone":      {cfg: valid(func(c *authn.IssuerConfig) { c.Algorithms = []string{"none"} }), want: []string{`algorithms: "none" is never allowed`}},
		"AlgHS256":     {cfg: valid(func(c *authn.IssuerConfig) { c.Algorithms = []string{"RS256", "HS256"} }), want: []string{`algorithms: "HS256" is not allowed: HMAC`}},
		"AlgLowercase": {cfg: valid(func(c *authn.IssuerConfig) { c.Algorithms = []string{"rs256"} }), want: []string{`algorithms: "rs256" is not a known algorithm; did you mean "RS256"?`}},
		"AlgUnknown":   {cfg: valid(func(c *authn.IssuerConfig) { c.Algorithms = []string{"ES256K"} }), want: []string{`algorithms: "ES256K" is not supported`}},
		"Everything": {
			cfg: authn.IssuerConfig{Algorithms: []string{"HS512"}},
			want: []string{
				"name: is required", "issuer: is required", "audiences: at least one", "jwks_url: no key source", "algorithms: ",
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			errs := tt.cfg.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate() = %q; want %d errors starting with %q", errs, len(tt.want), tt.want)
			}
			for i, err := range errs {
				if !strings.HasPrefix(err.Error(), tt.want[i]) {
					t.Errorf("error %d = %q; want it to start with %q", i, err, tt.want[i])
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	issuer := func(name, iss string) authn.IssuerConfig {
		return authn.IssuerConfig{Name: name, Issuer: iss, Audiences: []string{"credbroker"}, JWKSFile: "/k.json"}
	}
	tests := map[string]struct {
		cfg  authn.Config
		want []string // substrings of the joined error; nil: valid
	}{
		"Minimal":        {cfg: authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test")}}},
		"MaxLeeway":      {cfg: authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test")}, Leeway: 5 * time.Minute}},
		"TwoIssuers":     {cfg: authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test"), issuer("b", "https://b.test")}}},
		"NoIssuers":      {cfg: authn.Config{}, want: []string{"issuers: at least one issuer is required"}},
		"LeewayTooLarge": {cfg: authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test")}, Leeway: 6 * time.Minute}, want: []string{"leeway: 6m0s is more than the maximum 5m0s"}},
		"LeewayNegative": {cfg: authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test")}, Leeway: -time.Second}, want: []string{"leeway: -1s is negative"}},
		"RefreshNegative": {
			cfg:  authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test")}, RefreshInterval: -time.Second, PeriodicRefresh: -time.Second},
			want: []string{"refresh_interval: ", "periodic_refresh: "},
		},
		"DuplicateName": {
			cfg:  authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test"), issuer("a", "https://b.test")}},
			want: []string{"issuers[1] (a): name: already used by issuers[0]"},
		},
		"DuplicateIssuer": {
			cfg:  authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test"), issuer("b", "https://a.test")}},
			want: []string{`issuers[1] (b): issuer: "https://a.test" is already configured by issuers[0]`},
		},
		"IssuerErrorsArePrefixed": {
			cfg:  authn.Config{Issuers: []authn.IssuerConfig{issuer("a", "https://a.test"), {Name: "b", Issuer: "https://b.test", JWKSFile: "/k"}}},
			want: []string{"issuers[1] (b): audiences: at least one audience is required"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil; want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q; want it to contain %q", err, w)
				}
			}
			// NewVerifier refuses the same config before touching anything.
			if _, nerr := authn.NewVerifier(t.Context(), tt.cfg); nerr == nil || !strings.Contains(nerr.Error(), tt.want[0]) {
				t.Errorf("NewVerifier() = %v; want the validation error", nerr)
			}
		})
	}
}
