package broker

import (
	"strings"
	"testing"

	"connectrpc.com/connect"
)

func TestCheckCaps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		fields  []fieldCap
		wantErr string // "" for none
	}{
		{"AtCap", []fieldCap{{"subject", strings.Repeat("s", maxSubjectBytes), maxSubjectBytes}}, ""},
		{"Empty", []fieldCap{{"role", "", maxNameBytes}}, ""},
		{"SubjectOver", []fieldCap{{"subject", strings.Repeat("s", 11264), maxSubjectBytes}}, "subject is 11264 bytes; at most 256"},
		{"FirstOffenderNamed", []fieldCap{{"role", "ok", maxNameBytes}, {"break_glass_reason", strings.Repeat("r", 513), maxReasonBytes}, {"lease_id", strings.Repeat("l", 99), maxLeaseIDBytes}},
			"break_glass_reason is 513 bytes; at most 512"},
		{"BytesNotRunes", []fieldCap{{"role", strings.Repeat("é", 32), maxNameBytes}}, "role is 64 bytes; at most 63"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCaps(tc.fields...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("checkCaps: %v", err)
				}
				return
			}
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("checkCaps: %v, want invalid_argument %q", err, tc.wantErr)
			}
		})
	}
}

func TestStoreConnsConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(validConfig), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.ReaperMaxConns != 2 || cfg.Store.MaxConns != 10 {
		t.Errorf("store defaults: max_conns %d, reaper_max_conns %d; want 10 and 2", cfg.Store.MaxConns, cfg.Store.ReaperMaxConns)
	}
	for in, want := range map[string]string{
		"  reaper_max_conns: 1\n": "store.reaper_max_conns: 1: must be at least 2",
		"  max_conns: -3\n":       "store.max_conns: -3: must be at least 1",
	} {
		bad := strings.Replace(validConfig, "  dsn: env:CREDBROKER_DATABASE_URL\n", "  dsn: env:CREDBROKER_DATABASE_URL\n"+in, 1)
		_, err := ParseConfig([]byte(bad), testDrivers)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", strings.TrimSpace(in), err, want)
		}
	}
}
