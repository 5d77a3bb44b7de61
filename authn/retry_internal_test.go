package authn

import (
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := map[string]struct {
		failures int
		limit    time.Duration
		randN    func(int64) int64
		want     time.Duration
	}{
		"FirstFailureFullJitter":   {failures: 1, limit: 5 * time.Minute, randN: highest, want: time.Second},
		"FirstFailureHalfJitter":   {failures: 1, limit: 5 * time.Minute, randN: lowest, want: 500 * time.Millisecond},
		"Doubles":                  {failures: 3, limit: 5 * time.Minute, randN: highest, want: 4 * time.Second},
		"CappedAtLimit":            {failures: 30, limit: 5 * time.Minute, randN: highest, want: 5 * time.Minute},
		"CappedStillJittered":      {failures: 30, limit: 5 * time.Minute, randN: lowest, want: 150 * time.Second},
		"NoOverflowAfterManyFail":  {failures: 1 << 20, limit: time.Hour, randN: highest, want: time.Hour},
		"ColdRetryLimit":           {failures: 10, limit: coldRetry, randN: highest, want: coldRetry},
		"SmallLimitStartsAtEighth": {failures: 1, limit: 800 * time.Millisecond, randN: highest, want: 100 * time.Millisecond},
		"SmallLimitGrows":          {failures: 3, limit: 800 * time.Millisecond, randN: highest, want: 400 * time.Millisecond},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := retryDelay(tt.failures, tt.limit, tt.randN); got != tt.want {
				t.Errorf("retryDelay(%d, %s) = %s; want %s", tt.failures, tt.limit, got, tt.want)
			}
		})
	}
}
