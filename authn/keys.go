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

	"github.com/MicahParks/jwkset"
)

const (
	// maxJWKSSize bounds a JWK Set or discovery document read from disk or
	// the network.
	maxJWKSSize = 1 << 20
	// minRSABits is the smallest RSA modulus whose signatures are accepted.
	minRSABits = 2048
)

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
	switch key := jwk.Key().(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return pk, fmt.Errorf("RSA key has %d bits, fewer than %d", key.N.BitLen(), minRSABits)
		}
		pk.key = key
	case *ecdsa.PublicKey:
		pk.key = key
	case ed25519.PublicKey:
		pk.key = key
	default:
		return pk, fmt.Errorf("key type %T cannot verify signatures", key)
	}
	return pk, nil
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
