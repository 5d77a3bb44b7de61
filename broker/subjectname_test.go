package broker

import (
	"strings"
	"testing"
)

func TestSubjectName(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		claims map[string]any
		want   string
	}{
		"Email":                  {claims: map[string]any{"email": "ada@example.com", "preferred_username": "ada"}, want: "ada@example.com"},
		"PreferredUsername":      {claims: map[string]any{"preferred_username": "ada"}, want: "ada"},
		"EmptyEmailFallsBack":    {claims: map[string]any{"email": " ", "preferred_username": "ada"}, want: "ada"},
		"NonStringEmailSkipped":  {claims: map[string]any{"email": []any{"x@example.com"}, "preferred_username": "ada"}, want: "ada"},
		"Workload":               {claims: map[string]any{"sub": "system:serviceaccount:orders:api"}},
		"NoClaims":               {},
		"ControlCharsRemoved":    {claims: map[string]any{"email": "ada@example.com\n\x1b[31mroot"}, want: "ada@example.com[31mroot"},
		"InvalidUTF8Removed":     {claims: map[string]any{"preferred_username": "ad\xffa"}, want: "ada"},
		"CutAt256Bytes":          {claims: map[string]any{"email": strings.Repeat("a", 300)}, want: strings.Repeat("a", 256)},
		"CutAtCharacterBoundary": {claims: map[string]any{"email": strings.Repeat("a", 255) + "é"}, want: strings.Repeat("a", 255)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := subjectName(tt.claims); got != tt.want {
				t.Errorf("subjectName = %q; want %q", got, tt.want)
			}
		})
	}
}
