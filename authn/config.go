package authn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Limits of the verifier.
const (
	// MaxTokenSize is the largest token, in bytes, that Verify parses. Larger
	// tokens are rejected before any decoding.
	MaxTokenSize = 16 << 10

	// MaxLeeway is the largest clock skew Config.Leeway may allow.
	MaxLeeway = 5 * time.Minute

	defaultLeeway          = 30 * time.Second
	defaultRefreshInterval = 5 * time.Minute
	defaultPeriodicRefresh = time.Hour
	defaultHTTPTimeout     = 10 * time.Second
)

// defaultAlgorithms is what an issuer accepts when its config lists none.
var defaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// supportedAlgorithms are the only algorithms an issuer may allow: asymmetric
// signatures whose keys a JWKS can publish. HMAC and none are never accepted.
var supportedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

var issuerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// IssuerConfig is one entry of `issuers:` in the YAML config: a token issuer the
// broker trusts, the audiences its tokens must carry, and where its public keys
// come from. Exactly one of JWKSFile, JWKSURL, Discovery and SPIFFE is set.
type IssuerConfig struct {
	// Name is the config name policies refer to, e.g. "k8s-prod".
	Name string `yaml:"name"`
	// Issuer is the exact `iss` claim value tokens from this issuer carry.
	Issuer string `yaml:"issuer"`
	// Audiences lists the values of which a token's `aud` must contain at
	// least one. At least one is required.
	Audiences []string `yaml:"audiences"`
	// JWKSFile is a JWK Set file, read at start and on Reload.
	JWKSFile string `yaml:"jwks_file"`
	// JWKSURL is a JWK Set URL, fetched at start, periodically, and when a
	// token names an unknown key (rate-limited). https is required except
	// for loopback hosts.
	JWKSURL string `yaml:"jwks_url"`
	// Discovery fetches <Issuer>/.well-known/openid-configuration and uses its
	// jwks_uri. Issuer must then be an https URL (http for loopback hosts).
	Discovery bool `yaml:"discovery"`
	// Algorithms is the allow-list of token algorithms. Default: RS256, ES256,
	// EdDSA. Only RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA are
	// accepted; none and HMAC (HS*) are configuration errors.
	Algorithms []string `yaml:"algorithms"`
	// MaxTokenLifetime, when set, refuses tokens meant to live longer:
	// exp - iat, or exp - now for a token without iat. Default 0: no limit
	// beyond exp itself. Use it for issuers whose tokens should be
	// short-lived (projected service-account tokens, CI job tokens), so that
	// a stolen long-lived token is useless.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// SPIFFE makes this a SPIFFE trust domain's issuer of JWT-SVIDs, with
	// keys from its trust bundle instead of jwks_file, jwks_url or
	// discovery; Issuer is then optional. See [SPIFFEConfig].
	SPIFFE *SPIFFEConfig `yaml:"spiffe"`
	// CAFile is a PEM file of the CA certificates that the key server's
	// certificate (jwks_url, discovery) must chain to, for a provider behind
	// a private CA. Default: the system's roots. Read at start.
	CAFile string `yaml:"ca_file"`
	// InsecureHTTP allows plain http:// key and discovery URLs on hosts that
	// are not loopback, for development setups only: anyone on the network
	// path can then swap the keys. Default false; a warning when set.
	InsecureHTTP bool `yaml:"insecure_http"`
	// Kubernetes makes this a Kubernetes service-account token issuer whose
	// keys come from the API server; it replaces jwks_file, jwks_url and
	// discovery. See KubernetesConfig.
	Kubernetes *KubernetesConfig `yaml:"kubernetes"`
	// Login, when set, offers this issuer to people: `credbroker login`.
	Login *LoginConfig `yaml:"login"`
	// Environments, when set, are the only environments (a backend's
	// environment: dev, staging, prod …) whose roles a policy naming this
	// issuer may grant; granting a role of another environment is a
	// configuration error. Default: none listed, no restriction. It keeps
	// e.g. a development identity provider from ever reaching prod.
	Environments []string `yaml:"environments"`
}

// Validate checks the issuer config without touching the network or the file
// system. It returns every problem found; each error's message starts with the
// YAML field name, e.g. "audiences: at least one audience is required".
func (c IssuerConfig) Validate() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	switch {
	case c.Name == "":
		add("name", "is required")
	case !issuerNameRE.MatchString(c.Name):
		add("name", "%q must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}

	switch {
	case c.Kubernetes != nil:
		c.Kubernetes.validate(c, add)
	case c.Issuer == "" && c.SPIFFE != nil:
		// optional: JWT-SVIDs need not carry iss
	case c.Issuer == "":
		add("issuer", "is required: the exact iss claim of this issuer's tokens")
	case strings.TrimSpace(c.Issuer) != c.Issuer:
		add("issuer", "%q has leading or trailing spaces; iss is compared exactly", c.Issuer)
	case c.Discovery:
		if err := checkURL(c.Issuer, c.InsecureHTTP); err != nil {
			add("issuer", "discovery needs an issuer URL: %v", err)
		}
	}

	if len(c.Audiences) == 0 {
		add("audiences", "at least one audience is required")
	}
	for i, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			add("audiences", "entry %d is empty", i)
		}
	}

	var sources []string
	if c.JWKSFile != "" {
		sources = append(sources, "jwks_file")
	}
	if c.JWKSURL != "" {
		sources = append(sources, "jwks_url")
		if err := checkURL(c.JWKSURL, c.InsecureHTTP); err != nil {
			add("jwks_url", "%v", err)
		}
	}
	if c.Discovery {
		sources = append(sources, "discovery")
	}
	if c.Kubernetes != nil {
		sources = append(sources, "kubernetes")
	}
	switch {
	case c.SPIFFE != nil:
		errs = append(errs, c.SPIFFE.validate(sources, c.InsecureHTTP)...)
	case len(sources) == 0:
		add("jwks_url", "no key source: set exactly one of jwks_file, jwks_url, discovery: true, kubernetes: or spiffe:")
	case len(sources) > 1:
		add(sources[1], "conflicts with %s: set exactly one of jwks_file, jwks_url, discovery or kubernetes", sources[0])
	}

	for _, alg := range c.Algorithms {
		if err := checkAlgorithm(alg); err != nil {
			add("algorithms", "%v", err)
		}
	}
	if c.JWKSFile != "" && c.CAFile != "" {
		add("ca_file", "only applies to keys fetched over https (jwks_url, discovery, kubernetes); jwks_file is read from disk: remove ca_file")
	}
	if c.JWKSFile != "" && c.InsecureHTTP {
		add("insecure_http", "only applies to keys fetched over http (jwks_url, discovery, kubernetes); jwks_file is read from disk: remove insecure_http")
	}
	if c.MaxTokenLifetime < 0 {
		add("max_token_lifetime", "%s is negative: write a positive duration such as 1h, or leave it out for no limit", c.MaxTokenLifetime)
	}
	for i, env := range c.Environments {
		switch {
		case strings.TrimSpace(env) == "":
			add(fmt.Sprintf("environments[%d]", i), "is empty: write the environment: of the backends this issuer's identities may reach, e.g. dev")
		case slices.Index(c.Environments, env) < i:
			add(fmt.Sprintf("environments[%d]", i), "%q is listed twice", env)
		}
	}
	errs = append(errs, c.Login.validate(c)...)
	return errs
}

// algorithms returns the issuer's allow-list with the default filled in.
func (c IssuerConfig) algorithms() []string {
	if len(c.Algorithms) == 0 {
		return slices.Clone(defaultAlgorithms)
	}
	return slices.Clone(c.Algorithms)
}

func checkAlgorithm(alg string) error {
	switch {
	case slices.Contains(supportedAlgorithms, alg):
		return nil
	case strings.EqualFold(alg, "none"):
		return errors.New(`"none" is never allowed: it accepts unsigned tokens`)
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return fmt.Errorf("%q is not allowed: HMAC needs a shared secret and is never verified with public keys", alg)
	}
	for _, s := range supportedAlgorithms {
		if strings.EqualFold(alg, s) {
			return fmt.Errorf("%q is not a known algorithm; did you mean %q? (names are case-sensitive)", alg, s)
		}
	}
	return fmt.Errorf("%q is not supported; use one of %s", alg, strings.Join(supportedAlgorithms, ", "))
}

// Warnings returns what is allowed but unsafe in the issuer config, each
// starting with its YAML field name.
func (c IssuerConfig) Warnings() []string {
	if c.InsecureHTTP {
		return []string{"insecure_http: true: signing keys may be fetched over plain http, where anyone on the network path can replace them; use https (with ca_file for a private CA) outside development"}
	}
	return nil
}

// checkFetchURL accepts absolute https URLs, and http URLs whose host is a
// loopback address or localhost (tests and development).
func checkFetchURL(raw string) error {
	return checkURL(raw, false)
}

// checkURL is checkFetchURL that, with insecureHTTP, also accepts plain http
// on any host.
func checkURL(raw string, insecureHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a valid URL", raw)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q must be an absolute https URL", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not contain credentials", u.Redacted())
	}
	if u.Scheme == "http" && !insecureHTTP && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q must use https (with ca_file for a private CA); plain http is allowed for loopback hosts, or set insecure_http: true for a development setup", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Config configures a [Verifier]. The zero value of every field but Issuers
// means its default.
type Config struct {
	// Issuers are the trusted token issuers; at least one. Their names and
	// issuer (iss) values must be unique.
	Issuers []IssuerConfig
	// Leeway is the clock skew allowed for exp, nbf and iat. Default 30s; more
	// than MaxLeeway (5m) is an error.
	Leeway time.Duration
	// RefreshInterval is the minimum time between JWKS refreshes triggered by
	// tokens naming an unknown kid, per issuer; it is also the retry delay
	// after a failed fetch. While an issuer has no keys at all (its provider
	// was down at start), 5s or RefreshInterval, whichever is shorter, is
	// used instead. Default 5m. It is measured on the real (monotonic)
	// clock, not Now.
	RefreshInterval time.Duration
	// PeriodicRefresh is how often jwks_url and discovery issuers re-fetch
	// their keys in the background, so that removed keys stop verifying.
	// Default 1h.
	PeriodicRefresh time.Duration
	// HTTPClient fetches JWK Sets and discovery documents. Default: a client
	// with a 10s timeout that refuses redirects away from https (loopback
	// http excepted).
	HTTPClient *http.Client
	// Logger receives the detailed reason of every rejected token and key
	// fetch problems; never a token. Default: discard.
	Logger *slog.Logger
	// Now is the clock for exp, nbf and iat. Default time.Now.
	Now func() time.Time
}

// Validate checks the whole configuration without touching the network or the
// file system, and returns every problem found, joined. NewVerifier runs it.
func (c Config) Validate() error {
	var errs []error
	if len(c.Issuers) == 0 {
		errs = append(errs, errors.New("issuers: at least one issuer is required"))
	}
	names := map[string]int{}
	isss := map[string]int{}
	tds := map[string]int{} // spiffe trust domains: a token without iss picks its issuer by sub
	for i, ic := range c.Issuers {
		for _, err := range ic.Validate() {
			errs = append(errs, fmt.Errorf("issuers[%d] (%s): %w", i, ic.Name, err))
		}
		if j, dup := names[ic.Name]; dup && ic.Name != "" {
			errs = append(errs, fmt.Errorf("issuers[%d] (%s): name: already used by issuers[%d]", i, ic.Name, j))
		} else {
			names[ic.Name] = i
		}
		ic = ic.resolved()
		if j, dup := isss[ic.Issuer]; dup && ic.Issuer != "" {
			errs = append(errs, fmt.Errorf("issuers[%d] (%s): issuer: %q is already configured by issuers[%d]; a token's iss must select exactly one issuer", i, ic.Name, ic.Issuer, j))
		} else {
			isss[ic.Issuer] = i
		}
		if ic.SPIFFE != nil {
			if td, err := ic.SPIFFE.trustDomain(); err == nil {
				if j, dup := tds[td.Name()]; dup {
					errs = append(errs, fmt.Errorf("issuers[%d] (%s): spiffe.trust_domain: %s is already configured by issuers[%d]; one issuer per trust domain", i, ic.Name, td.Name(), j))
				} else {
					tds[td.Name()] = i
				}
			}
		}
	}
	if c.Leeway < 0 {
		errs = append(errs, fmt.Errorf("leeway: %s is negative", c.Leeway))
	} else if c.Leeway > MaxLeeway {
		errs = append(errs, fmt.Errorf("leeway: %s is more than the maximum %s", c.Leeway, MaxLeeway))
	}
	if c.RefreshInterval < 0 {
		errs = append(errs, fmt.Errorf("refresh_interval: %s is negative", c.RefreshInterval))
	}
	if c.PeriodicRefresh < 0 {
		errs = append(errs, fmt.Errorf("periodic_refresh: %s is negative", c.PeriodicRefresh))
	}
	return errors.Join(errs...)
}
