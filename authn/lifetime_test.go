package authn_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

// TestMaxTokenLifetime: with max_token_lifetime an issuer's tokens that were
// made to live longer are refused, even while they are unexpired; without
// it, exp alone decides.
func TestMaxTokenLifetime(t *testing.T) {
	t.Parallel()
	limited := setup(t, func(c *authn.Config) { c.Issuers[0].MaxTokenLifetime = time.Hour })
	unlimited := setup(t)
	at := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	tests := map[string]struct {
		claims jwt.MapClaims
		ok     bool
	}{
		"Short":             {claims: with(nil), ok: true},
		"ExactlyTheLimit":   {claims: with(jwt.MapClaims{"iat": at(0), "exp": at(time.Hour)}), ok: true},
		"SecondTooLong":     {claims: with(jwt.MapClaims{"iat": at(0), "exp": at(time.Hour + time.Second)})},
		"DayLong":           {claims: with(jwt.MapClaims{"iat": at(0), "exp": at(24 * time.Hour)})},
		"OldDayLongNearExp": {claims: with(jwt.MapClaims{"iat": at(-23 * time.Hour), "nbf": nil, "exp": at(time.Hour)})},
		"NoIatShort":        {claims: with(jwt.MapClaims{"iat": nil, "exp": at(59 * time.Minute)}), ok: true},
		"NoIatWithinLeeway": {claims: with(jwt.MapClaims{"iat": nil, "exp": at(time.Hour + 20*time.Second)}), ok: true},
		"NoIatTooLong":      {claims: with(jwt.MapClaims{"iat": nil, "exp": at(2 * time.Hour)})},
		"NoIatYearLong":     {claims: with(jwt.MapClaims{"iat": nil, "nbf": nil, "exp": at(365 * 24 * time.Hour)})},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			token := mint(t, jwt.SigningMethodES256, limited.keys.ec, "ec1", tc.claims)
			_, err := limited.v.Verify(t.Context(), token)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var ve *authn.VerifyError
			if !errors.As(err, &ve) || ve.Reason != authn.ReasonLifetime || !errors.Is(err, authn.ErrUnauthenticated) {
				t.Fatalf("Verify = %v, want a %s rejection", err, authn.ReasonLifetime)
			}
			if !strings.Contains(err.Error(), "max_token_lifetime 1h0m0s") {
				t.Errorf("message %q does not name the limit", err)
			}
			// Without the limit, the same token is good.
			if _, err := unlimited.v.Verify(t.Context(), token); err != nil {
				t.Errorf("without max_token_lifetime: %v", err)
			}
		})
	}
}

func TestMaxTokenLifetimeNegative(t *testing.T) {
	t.Parallel()
	errs := authn.IssuerConfig{
		Name: "x", Issuer: "https://x", Audiences: []string{"a"}, JWKSFile: "/k.json", MaxTokenLifetime: -time.Hour,
	}.Validate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "max_token_lifetime: -1h0m0s is negative") {
		t.Errorf("Validate = %v", errs)
	}
}
