package broker

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// subjectNameClaims are the claims, in order of preference, that say who a
// person is in terms people read: OIDC's email, then preferred_username.
var subjectNameClaims = []string{"email", "preferred_username"}

// subjectName returns who the holder of a token's claims is, for the lease
// and its events: the first of subjectNameClaims that is a non-empty string,
// with invalid UTF-8 and control characters removed and cut to
// maxSubjectBytes at a character boundary. Empty for workloads, whose tokens
// carry neither claim. It is a label for the audit, never an authorization
// input, so an odd value is cleaned rather than refused.
func subjectName(claims map[string]any) string {
	for _, name := range subjectNameClaims {
		s, _ := claims[name].(string)
		s = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, strings.ToValidUTF8(s, ""))
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if len(s) > maxSubjectBytes {
			n := maxSubjectBytes
			for n > 0 && !utf8.RuneStart(s[n]) {
				n--
			}
			s = s[:n]
		}
		return s
	}
	return ""
}
