package broker

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter holds one token bucket per identity, so a single noisy workload
// cannot flood a backend with new users, or the broker with calls. Idle
// buckets are dropped.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

// idleAfter is how long an unused bucket is kept; a full bucket refills long
// before that.
const idleAfter = 10 * time.Minute

func (l *limiter) allow(key string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idleAfter {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > idleAfter {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// exhausted reports, without taking a token, whether key's bucket is empty
// now.
func (l *limiter) exhausted(key string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	return ok && b.lim.TokensAt(now) < 1
}

// refusedTokens remembers which identity recently refused tokens belong to
// (by the token's SHA-256), so that a flood repeating one token is refused
// while its identity's bucket is empty without verifying its signature
// again. It is only ever used to refuse, never to accept. Bounded: when
// full, it starts over.
type refusedTokens struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]string
}

const maxRefusedTokens = 4096

func (r *refusedTokens) get(h [sha256.Size]byte) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key, ok := r.m[h]
	return key, ok
}

func (r *refusedTokens) put(h [sha256.Size]byte, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxRefusedTokens {
		r.m = map[[sha256.Size]byte]string{}
	}
	r.m[h] = key
}

// Caps on the caller-controlled strings that reach the lease store or a log.
// A longer value is refused with invalid_argument naming the field, its
// length and the cap, before anything is written.
const (
	// maxSubjectBytes caps a token's sub (and an admin's subject filter);
	// Kubernetes service-account subjects are well under 100 bytes.
	maxSubjectBytes = 256
	// maxIssuerBytes caps the issuer name of an identity (a config name).
	maxIssuerBytes = 256
	// maxNameBytes caps role and backend names: config names are at most
	// 63 bytes, so a longer one names nothing.
	maxNameBytes = 63
	// maxLeaseIDBytes caps a lease id ("lease_" and 26 characters).
	maxLeaseIDBytes = 64
	// maxPageTokenBytes caps a page token (the broker's are under 100).
	maxPageTokenBytes = 256
	// maxReasonBytes caps a break-glass reason and an admin's revoke reason.
	maxReasonBytes = 512
	// maxKindBytes caps an event kind filter.
	maxKindBytes = 64
)

// fieldCap is one caller-controlled string and its cap.
type fieldCap struct {
	name  string
	value string
	max   int
}

// checkCaps refuses the first field longer than its cap.
func checkCaps(fields ...fieldCap) error {
	for _, f := range fields {
		if len(f.value) > f.max {
			return errFieldTooLong(f.name, len(f.value), f.max)
		}
	}
	return nil
}

// keyedLock serializes work per key (renewals of one lease) within this
// process: a backend may refuse concurrent changes of one user (PostgreSQL
// answers "tuple concurrently updated"). Waiters hold no store connection.
// Keys live only while held or awaited.
type keyedLock struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	sem  chan struct{} // holds one token while the key is locked
	refs int           // holder and waiters
}

// lock waits until key is free or ctx ends, and returns the unlock.
func (k *keyedLock) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e, ok := k.m[key]
	if !ok {
		e = &keyedEntry{sem: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.sem <- struct{}{}:
		return func() { <-e.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
