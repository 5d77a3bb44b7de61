package broker

import (
	"reflect"
	"testing"
)

func TestClaimAt(t *testing.T) {
	t.Parallel()
	// The claims of a projected service-account token.
	k8s := map[string]any{
		"sub": "system:serviceaccount:orders:api",
		"kubernetes.io": map[string]any{
			"namespace":      "orders",
			"pod":            map[string]any{"name": "api-7d4b9c-x2x9z"},
			"serviceaccount": map[string]any{"name": "api", "uid": "6f1e5b0a"},
		},
		"groups": []any{"dev"},
	}
	tests := map[string]struct {
		claims map[string]any
		name   string
		want   any
	}{
		"TopLevel":            {claims: k8s, name: "sub", want: "system:serviceaccount:orders:api"},
		"TopLevelList":        {claims: k8s, name: "groups", want: []any{"dev"}},
		"DottedKeyThenNested": {claims: k8s, name: "kubernetes.io.namespace", want: "orders"},
		"TwoLevels":           {claims: k8s, name: "kubernetes.io.serviceaccount.name", want: "api"},
		"Object":              {claims: k8s, name: "kubernetes.io.pod", want: map[string]any{"name": "api-7d4b9c-x2x9z"}},
		"Missing":             {claims: k8s, name: "kubernetes.io.nope"},
		"PathThroughString":   {claims: k8s, name: "sub.x"},
		"PathThroughList":     {claims: k8s, name: "groups.0"},
		"TrailingDot":         {claims: k8s, name: "kubernetes.io."},
		"LiteralDottedClaim":  {claims: map[string]any{"a.b": "flat"}, name: "a.b", want: "flat"},
		"AmbiguousWithNull": {
			claims: map[string]any{"a.b": "x", "a": map[string]any{"b": nil}},
			name:   "a.b",
		},
		"Ambiguous": {
			claims: map[string]any{"a.b": "flat", "a": map[string]any{"b": "nested"}},
			name:   "a.b",
		},
		"NilClaims": {name: "kubernetes.io.namespace"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := claimAt(tt.claims, tt.name); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("claimAt(%q) = %#v; want %#v", tt.name, got, tt.want)
			}
		})
	}
}
