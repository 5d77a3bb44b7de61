package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
)

const (
	// maxJWKSSize bounds a JWK Set or discovery document read from disk or
	// the network.
	maxJWKSSize = 1 << 20
	// minRSABits is the smallest RSA modulus whose signatures are accepted.
	minRSABits = 2048
)

// The "use" values of a SPIFFE bundle's keys (SPIFFE Trust Domain and
// Bundle §4.2.1).
const (
	useJWTSVID  = "jwt-svid"
	useX509SVID = "x509-svid"
)

// errX509SVID marks a JWK that is a SPIFFE X.509 authority, skipped quietly.
var errX509SVID = errors.New("an X.509-SVID authority, not a token signing key")

// publicKey is one verification key of an issuer.
type publicKey struct {
	kid string
	alg string // the JWK's alg, empty when the JWK does not pin one
	key crypto.PublicKey
}

// keySet is an immutable snapshot of an issuer's keys; a refresh swaps in a
// new one.
type keySet struct {
	keys []publicKey
	// refreshHint is a SPIFFE bundle's spiffe_refresh_hint; 0 when absent.
	refreshHint time.Duration
}

// find returns the keys a token with this header may be verified with: the
// keys with its kid, or every key when the token has no kid.
func (s *keySet) find(kid string, hasKID bool) []publicKey {
	if s == nil {
		return nil
	}
	if !hasKID {
		return s.keys
	}
	var out []publicKey
	for _, k := range s.keys {
		if k.kid == kid {
			out = append(out, k)
		}
	}
	return out
}

func (s *keySet) kids() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k.kid)
	}
	return out
}

// parseJWKS reads a JWK Set document. Keys that cannot verify signatures here
// (symmetric, encryption-only, unsupported types, weak RSA) are skipped with a
// warning rather than failing the set, so one odd key an identity provider
// publishes does not lock every workload out; a document that is not a JWK
// Set at all is an error, so a refresh that fetched an error page keeps the
// previous keys.
func parseJWKS(data []byte, log *slog.Logger) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`not a JWK Set: no "keys" array`)
	}
	set := &keySet{}
	for i, raw := range doc.Keys {
		k, err := parseJWK(raw)
		if errors.Is(err, errX509SVID) {
			continue // a SPIFFE bundle's X.509 authority: not for tokens
		}
		if err != nil {
			log.Warn("skipping JWK Set entry", slog.Int("index", i), slog.String("kid", k.kid), slog.Any("error", err))
			continue
		}
		set.keys = append(set.keys, k)
	}
	return set, nil
}

func parseJWK(raw json.RawMessage) (publicKey, error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return publicKey{}, fmt.Errorf("not a JWK: %w", err)
	}
	pk := publicKey{kid: m.KID, alg: string(m.ALG)}
	if m.USE == useX509SVID {
		return pk, errX509SVID
	}
	if m.USE == useJWTSVID {
		// A SPIFFE bundle's JWT authority (SPIRE's bundle served as a
		// JWK Set) is a signature key.
		m.USE = jwkset.UseSig
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return pk, fmt.Errorf("key use is %q, not sig", m.USE)
	}
	if m.KTY == jwkset.KtyOct {
		return pk, errors.New("symmetric (oct) keys are never used to verify tokens")
	}
	// Private material a set may carry by mistake is ignored: only the
	// public half is decoded.
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return pk, err
	}
	pk.key, err = usableKey(jwk.Key())
	return pk, err
}

// usableKey returns key if it is a public key tokens may be verified with:
// RSA of at least minRSABits, ECDSA or Ed25519.
func usableKey(key any) (any, error) {
	switch key := key.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, fewer than %d", key.N.BitLen(), minRSABits)
		}
		return key, nil
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return key, nil
	default:
		return nil, fmt.Errorf("key type %T cannot verify signatures", key)
	}
}

// fits reports whether key can verify a signature made with alg, so that a
// token can never choose how a key is used.
func fits(alg string, k publicKey) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// CheckKeyFile reads the issuer's key file (jwks_file or spiffe.bundle_file)
// as NewVerifier does, and returns an error naming the field and the file
// when it cannot be read or holds no usable signing key. Issuers whose keys
// are fetched over the network return nil. `config check` runs it.
func (c IssuerConfig) CheckKeyFile() error {
	_, _, err := c.readKeyFile(slog.New(slog.DiscardHandler))
	return err
}

// readKeyFile reads and parses the issuer's jwks_file or spiffe.bundle_file,
// and returns the keys and the file's content; nil, nil, nil for an issuer
// without a key file.
func (c IssuerConfig) readKeyFile(log *slog.Logger) (*keySet, []byte, error) {
	field, path := "jwks_file", c.JWKSFile
	if c.SPIFFE != nil {
		field, path = "spiffe.bundle_file", c.SPIFFE.BundleFile
	}
	if path == "" {
		return nil, nil, nil
	}
	data, err := readBounded(path, maxJWKSSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", field, err)
	}
	log = log.With(slog.String(field, path))
	var set *keySet
	if c.SPIFFE != nil {
		td, err := c.SPIFFE.trustDomain()
		if err != nil {
			return nil, nil, fmt.Errorf("spiffe.trust_domain: %w", err)
		}
		if set, err = parseBundle(td, data, log); err != nil {
			return nil, nil, fmt.Errorf("%s: %s %w", field, path, err)
		}
		return set, data, nil
	}
	if set, err = parseJWKS(data, log); err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", field, path, err)
	}
	if len(set.keys) == 0 {
		return nil, nil, fmt.Errorf("%s: %s holds no usable signing keys", field, path)
	}
	return set, data, nil
}
