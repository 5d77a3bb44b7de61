// Package authn owns token verification: it turns the bearer token a caller
// presents into an [Identity] the broker's policies can judge, or into an error
// wrapping [ErrUnauthenticated].
//
// A [Verifier] trusts the issuers its [Config] lists. Each [IssuerConfig] names
// the exact iss value of its tokens, the audiences a token must carry one of,
// the signing algorithms it allows, and where its public keys come from: a
// JWK Set file, a JWK Set URL, or OpenID Connect discovery.
//
// # Verification
//
// [Verifier.Verify] picks the issuer by the token's (as yet unverified) iss
// claim, checks the header's alg against that issuer's allow-list before any
// key is touched, finds the key by kid in that issuer's key set only, and
// verifies the signature and the exp, nbf, iat and aud claims with
// github.com/golang-jwt/jwt/v5, allowing a small, bounded clock skew. It
// requires exp and a non-empty sub. none and HMAC algorithms are never
// accepted, whatever the configuration, so a public key can never be used as
// an HMAC secret; a key is only ever used with the algorithm its type and JWK
// alg allow.
//
// Rejections are [*VerifyError]s: a stable [Reason] and a short message the
// caller can act on ("token expired", "token audience does not include
// credbroker"). Neither ever contains the token. The Verifier's logger gets
// the detail, with the issuer name and subject when known.
//
// # Keys
//
// Key files are read at start and on [Verifier.Reload]. Key URLs and discovery
// documents are fetched at start, every Config.PeriodicRefresh, and when a
// token names a kid the cache lacks, at most once per Config.RefreshInterval
// per issuer, so a flood of made-up kids cannot flood the identity provider.
// A fetch that fails leaves the cached keys in place: when the provider is
// down, tokens signed with known keys still verify. An unreachable provider at
// start is logged, not fatal. JWK parsing uses github.com/MicahParks/jwkset.
//
// # Token cache
//
// A Verifier remembers the tokens it accepted, keyed by the SHA-256 of the
// raw token, with the [Identity] each proved, so that a workload presenting
// the same token on every call pays for one signature check, not one per
// call. A remembered token is accepted again only while a fresh
// verification would accept it:
//
//   - only by the Verifier that verified it: a config reload makes a new
//     Verifier, with an empty cache;
//   - only while its issuer still serves the very key set that verified it:
//     any key set swapped in (the periodic refresh, a refresh for an unknown
//     kid, [Verifier.Reload], a changed bundle_file) ends the hits of every
//     token verified before, which are then verified afresh; so a key
//     withdrawn from a JWK Set refuses its tokens as soon as the Verifier
//     has fetched or read the set without it, exactly as without the cache;
//   - only while exp (plus the leeway) has not passed and nbf (minus the
//     leeway) has, checked against the clock on every hit, and only while
//     the clock is not behind the time it was verified (iat and
//     max_token_lifetime without iat only get more acceptable as time
//     passes);
//   - for at most a minute after it was verified, whatever its exp.
//
// A refused token is never remembered. The cache holds at most 10 000
// tokens and drops the least recently used first. The Identities returned
// for one token share their Audience and Claims.
//
// # Development issuers
//
// [SigningKey] and [JWKSJSON] make a throwaway issuer: `credbroker dev` and
// tests mint tokens with them and publish the public keys as a JWK Set.
package authn
