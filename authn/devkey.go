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

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// SigningKey is a private key with its key id, for a throwaway issuer: the
// `credbroker dev` command and tests mint tokens with it and publish its
// public half with [JWKSJSON]. Key is an *rsa.PrivateKey, an *ecdsa.PrivateKey
// on P-256, P-384 or P-521, or an ed25519.PrivateKey.
type SigningKey struct {
	KID string
	Key crypto.Signer
}

// Algorithm returns the JWS algorithm Sign uses for the key: RS256 for RSA,
// ES256/ES384/ES512 for ECDSA by curve, EdDSA for Ed25519.
func (k SigningKey) Algorithm() (string, error) {
	m, err := k.method()
	if err != nil {
		return "", err
	}
	return m.Alg(), nil
}

func (k SigningKey) method() (jwt.SigningMethod, error) {
	switch key := k.Key.(type) {
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS256, nil
	case *ecdsa.PrivateKey:
		switch key.Curve {
		case elliptic.P256():
			return jwt.SigningMethodES256, nil
		case elliptic.P384():
			return jwt.SigningMethodES384, nil
		case elliptic.P521():
			return jwt.SigningMethodES512, nil
		}
		return nil, errors.New("authn: unsupported ECDSA curve")
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA, nil
	case nil:
		return nil, errors.New("authn: signing key is nil")
	}
	return nil, fmt.Errorf("authn: unsupported signing key type %T", k.Key)
}

// Sign returns a compact JWS of claims, signed with the key and carrying its
// KID in the header (when set). It adds no claims of its own.
func (k SigningKey) Sign(claims jwt.MapClaims) (string, error) {
	m, err := k.method()
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(m, claims)
	if k.KID != "" {
		t.Header["kid"] = k.KID
	}
	s, err := t.SignedString(k.Key)
	if err != nil {
		return "", fmt.Errorf("authn: sign token: %w", err)
	}
	return s, nil
}

// JWKSJSON returns the public JWK Set of keys, as an issuer publishes it at its
// jwks_uri and as a jwks_file holds it. Every key needs a unique, non-empty
// KID. Each JWK carries use "sig" and the alg Sign uses, so a verifier never
// accepts another algorithm with it.
func JWKSJSON(keys ...SigningKey) ([]byte, error) {
	set := jwkset.JWKSMarshal{Keys: make([]jwkset.JWKMarshal, 0, len(keys))}
	seen := map[string]bool{}
	for _, k := range keys {
		if k.KID == "" {
			return nil, errors.New("authn: JWKS key without a KID")
		}
		if seen[k.KID] {
			return nil, fmt.Errorf("authn: duplicate KID %q in JWKS", k.KID)
		}
		seen[k.KID] = true
		alg, err := k.Algorithm()
		if err != nil {
			return nil, err
		}
		jwk, err := jwkset.NewJWKFromKey(k.Key.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.ALG(alg), KID: k.KID, USE: jwkset.UseSig},
		})
		if err != nil {
			return nil, fmt.Errorf("authn: JWK for %q: %w", k.KID, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	return json.Marshal(set)
}
