package authn

import (
	"errors"
)

// ErrUnauthenticated is wrapped by every error [Verifier.Verify] returns, so
// callers map a failed verification with errors.Is(err, ErrUnauthenticated).
var ErrUnauthenticated = errors.New("unauthenticated")

// Reason is a stable, low-cardinality name for why a token was rejected. It is
// fit for a metric label and for tests; it never contains caller input.
type Reason string

// The reasons [Verifier.Verify] reports in [VerifyError.Reason].
const (
	ReasonEmpty           Reason = "empty"            // no token at all
	ReasonTooLarge        Reason = "too_large"        // more than MaxTokenSize bytes
	ReasonMalformed       Reason = "malformed"        // not a compact JWS with JSON header and claims
	ReasonNoIssuer        Reason = "no_issuer"        // no iss claim
	ReasonUnknownIssuer   Reason = "unknown_issuer"   // iss names no configured issuer
	ReasonAlgorithm       Reason = "algorithm"        // alg is none, HMAC, or not in the issuer's allow-list
	ReasonCritical        Reason = "critical_header"  // a crit header names extensions nobody here understands
	ReasonUnknownKey      Reason = "unknown_key"      // kid is not in the issuer's key set, even after a refresh
	ReasonKeysUnavailable Reason = "keys_unavailable" // the issuer's keys have never been fetched successfully
	ReasonSignature       Reason = "signature"        // the signature does not verify with the issuer's key
	ReasonExpired         Reason = "expired"          // exp is in the past, beyond the leeway
	ReasonNoExpiry        Reason = "no_expiry"        // no exp claim
	ReasonNotYetValid     Reason = "not_yet_valid"    // nbf is in the future, beyond the leeway
	ReasonIssuedInFuture  Reason = "issued_in_future" // iat is in the future, beyond the leeway
	ReasonAudience        Reason = "audience"         // aud is missing or names none of the issuer's audiences
	ReasonNoSubject       Reason = "no_subject"       // no sub claim, or an empty one
	ReasonInvalidClaim    Reason = "invalid_claim"    // a registered claim has the wrong JSON type
	ReasonLifetime        Reason = "lifetime"         // exp - iat (or exp - now) is more than the issuer's max_token_lifetime
	ReasonCanceled        Reason = "canceled"         // the caller's context ended while keys were being fetched
)

// VerifyError is the error [Verifier.Verify] returns. Its message is short,
// written for the person holding the token, and never contains the token; the
// detailed reason is logged by the Verifier instead. It wraps
// [ErrUnauthenticated], and also the context's error when Reason is
// ReasonCanceled.
type VerifyError struct {
	// Reason says why the token was rejected, as a stable label.
	Reason Reason
	// Message is what Error returns, e.g. "token expired".
	Message string

	cause error // context.Canceled or DeadlineExceeded; nil otherwise
}

// Error returns the short, caller-safe message.
func (e *VerifyError) Error() string { return e.Message }

// Unwrap lets errors.Is find ErrUnauthenticated (and a context error when the
// caller gave up).
func (e *VerifyError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrUnauthenticated, e.cause}
	}
	return []error{ErrUnauthenticated}
}

// rejection is a VerifyError plus the detail that goes to the log only.
type rejection struct {
	*VerifyError
	detail  string // for the log: what exactly failed
	issuer  string // IssuerConfig.Name, once known
	subject string // unverified sub, once known
}

func reject(reason Reason, msg, detail string) *rejection {
	return &rejection{VerifyError: &VerifyError{Reason: reason, Message: msg}, detail: detail}
}
