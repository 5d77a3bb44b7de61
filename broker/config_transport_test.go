package broker

import (
	"strings"
	"testing"
)

// TestParseConfigTransport covers metrics_listen and the mTLS keys: what is
// accepted, and that every refusal names the path, the value and the fix.
func TestParseConfigTransport(t *testing.T) {
	t.Parallel()
	withTLS := func(tls string) func(string) string {
		return func(s string) string {
			return strings.Replace(s, "listen: 127.0.0.1:8420\n", "listen: 0.0.0.0:8420\ntls: "+tls+"\n", 1)
		}
	}
	withMetrics := func(addr string) func(string) string {
		return func(s string) string {
			return strings.Replace(s, "listen: 127.0.0.1:8420\n", "listen: 127.0.0.1:8420\nmetrics_listen: "+addr+"\n", 1)
		}
	}
	chain := func(fs ...func(string) string) func(string) string {
		return func(s string) string {
			for _, f := range fs {
				s = f(s)
			}
			return s
		}
	}
	tests := map[string]struct {
		edit func(string) string
		want []string // empty: the config is valid
	}{
		"MetricsLoopback":    {edit: withMetrics("127.0.0.1:9420")},
		"MetricsLocalhost":   {edit: withMetrics("localhost:9420")},
		"MetricsIPv6Loop":    {edit: withMetrics(`"[::1]:9420"`)},
		"MetricsPublicTLS":   {edit: chain(withTLS("{cert_file: c, key_file: k}"), withMetrics("0.0.0.0:9420"))},
		"MetricsPublicNoTLS": {edit: withMetrics("0.0.0.0:9420"), want: []string{"metrics_listen: 0.0.0.0:9420 is not a loopback address", "127.0.0.1:9420"}},
		"MetricsNotHostPort": {edit: withMetrics("9420"), want: []string{`metrics_listen: "9420" is not host:port`}},
		"MetricsOnAPIPort":   {edit: withMetrics("127.0.0.1:8420"), want: []string{"metrics_listen: 127.0.0.1:8420 is the API's listen address"}},
		"ClientCA":           {edit: withTLS("{cert_file: c, key_file: k, client_ca_file: ca.pem}")},
		"ClientCARequire":    {edit: withTLS("{cert_file: c, key_file: k, client_ca_file: ca.pem, client_auth: require}")},
		"ClientCAIfGiven":    {edit: withTLS("{cert_file: c, key_file: k, client_ca_file: ca.pem, client_auth: verify_if_given}")},
		"ClientAuthUnknown": {
			edit: withTLS("{cert_file: c, key_file: k, client_ca_file: ca.pem, client_auth: optional}"),
			want: []string{`tls.client_auth: unknown value "optional"`, "require", "verify_if_given"},
		},
		"ClientAuthWithoutCA": {
			edit: withTLS("{cert_file: c, key_file: k, client_auth: require}"),
			want: []string{`tls.client_auth: "require" needs tls.client_ca_file`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(tc.edit(validConfig)), testDrivers)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("ParseConfig refused a good config: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ParseConfig accepted a bad config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
