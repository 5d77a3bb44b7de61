package broker

import (
	"encoding/json"
	"net/http"
)

// LoginConfigPath is where the broker publishes the issuers people log in
// with (those with a `login:` block), unauthenticated: `credbroker login`
// reads it, so a person needs no local config. It holds only public values
// (issuer URL, public client id, scopes).
const LoginConfigPath = "/v1/login-config"

// loginIssuer is one entry of the login config document.
type loginIssuer struct {
	Name     string   `json:"name"`
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// serveLoginConfig answers GET /v1/login-config from the running config:
// {"issuers": [{"name", "issuer", "client_id", "scopes"}, …]}, empty when no
// issuer has a login block.
func (s *Server) serveLoginConfig(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		Issuers []loginIssuer `json:"issuers"`
	}{Issuers: []loginIssuer{}}
	for _, ic := range s.rt.Load().cfg.Issuers {
		if ic.Login == nil {
			continue
		}
		out.Issuers = append(out.Issuers, loginIssuer{
			Name: ic.Name, Issuer: ic.Issuer, ClientID: ic.Login.ClientID, Scopes: ic.Login.LoginScopes(),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}
