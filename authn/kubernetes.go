package authn

import (
	"cmp"
	"fmt"
	"strings"
)

// In-cluster defaults of a kubernetes: issuer: where a pod reaches its API
// server, and where the kubelet mounts the pod's service-account token and
// the cluster CA.
const (
	DefaultKubernetesAPIServer = "https://kubernetes.default.svc"
	DefaultKubernetesCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	DefaultKubernetesTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

	// kubernetesJWKSPath is the API server's service-account issuer key
	// set (ServiceAccountIssuerDiscovery, GA since Kubernetes 1.21).
	kubernetesJWKSPath = "/openid/v1/jwks"
	// maxBearerSize bounds the token file read before each key fetch.
	maxBearerSize = 64 << 10
)

// KubernetesConfig is the `kubernetes:` block of an issuer: it trusts a
// cluster's service-account tokens (projected volumes, TokenRequest) and
// fetches their keys from the API server's /openid/v1/jwks, authenticated
// with the broker's own service-account token. Tokens' iss must equal
// Issuer.
type KubernetesConfig struct {
	// Issuer is the cluster's service-account issuer (the API server's
	// --service-account-issuer), e.g. https://kubernetes.default.svc.cluster.local.
	// Required, here or as the issuer's own `issuer:`.
	Issuer string `yaml:"issuer"`
	// APIServer is the API server's base URL. Default
	// https://kubernetes.default.svc.
	APIServer string `yaml:"api_server"`
	// CAFile is the cluster CA (PEM) the API server's certificate must
	// chain to. Default /var/run/secrets/kubernetes.io/serviceaccount/ca.crt.
	CAFile string `yaml:"ca_file"`
	// TokenFile holds the bearer token for the API server, read again
	// before every key fetch so that a rotated projected token is used.
	// Default /var/run/secrets/kubernetes.io/serviceaccount/token.
	TokenFile string `yaml:"token_file"`
}

// validate checks the kubernetes block of c; field names are relative to
// the issuer.
func (k *KubernetesConfig) validate(c IssuerConfig, add func(field, format string, args ...any)) {
	switch {
	case k.Issuer == "" && c.Issuer == "":
		add("kubernetes.issuer", "is required: the cluster's service-account issuer, the iss of its tokens, e.g. https://kubernetes.default.svc.cluster.local (kubectl get --raw /.well-known/openid-configuration shows it)")
	case k.Issuer != "" && c.Issuer != "" && k.Issuer != c.Issuer:
		add("issuer", "%q differs from kubernetes.issuer %q: set the cluster's service-account issuer once, as kubernetes.issuer", c.Issuer, k.Issuer)
	default:
		if iss := cmp.Or(k.Issuer, c.Issuer); strings.TrimSpace(iss) != iss {
			add("kubernetes.issuer", "%q has leading or trailing spaces; iss is compared exactly", iss)
		}
	}
	// The broker's own service-account token rides on every fetch: it never
	// goes over plain http off loopback, insecure_http or not.
	if c.InsecureHTTP {
		add("insecure_http", "cannot be used with kubernetes: the broker's service-account token would cross the network in plain text; use https with kubernetes.ca_file")
	} else if err := checkURL(cmp.Or(k.APIServer, DefaultKubernetesAPIServer), false); err != nil {
		add("kubernetes.api_server", "%v", err)
	}
	if k.CAFile != "" && c.CAFile != "" && k.CAFile != c.CAFile {
		add("ca_file", "conflicts with kubernetes.ca_file: set the cluster CA once, as kubernetes.ca_file")
	}
	if strings.TrimSpace(k.TokenFile) != k.TokenFile {
		add("kubernetes.token_file", "%q has leading or trailing spaces", k.TokenFile)
	}
}

// resolved returns c with its kubernetes block, if any, turned into what the
// verifier uses: Issuer and CAFile filled in, and the block's defaults set.
func (c IssuerConfig) resolved() IssuerConfig {
	if c.Kubernetes == nil {
		return c
	}
	k := *c.Kubernetes
	k.Issuer = cmp.Or(k.Issuer, c.Issuer)
	k.APIServer = cmp.Or(k.APIServer, DefaultKubernetesAPIServer)
	k.CAFile = cmp.Or(k.CAFile, c.CAFile, DefaultKubernetesCAFile)
	k.TokenFile = cmp.Or(k.TokenFile, DefaultKubernetesTokenFile)
	c.Issuer, c.CAFile, c.Kubernetes = k.Issuer, k.CAFile, &k
	return c
}

// kubernetesJWKSURL is where the API server publishes the service-account
// signing keys.
func (k *KubernetesConfig) jwksURL() string {
	return strings.TrimSuffix(k.APIServer, "/") + kubernetesJWKSPath
}

// bearerFromFile returns a function that reads a bearer token from path each
// time it is called, so that a token the kubelet rotated is picked up. Its
// errors name the file, never the token.
func bearerFromFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := readBounded(path, maxBearerSize)
		if err != nil {
			return "", fmt.Errorf("kubernetes.token_file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		switch {
		case tok == "":
			return "", fmt.Errorf("kubernetes.token_file: %s is empty", path)
		case strings.ContainsAny(tok, " \t\r\n"):
			return "", fmt.Errorf("kubernetes.token_file: %s holds more than one token (whitespace inside)", path)
		}
		return tok, nil
	}
}
