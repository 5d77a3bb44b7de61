package authn

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

const (
	// cacheSize bounds how many verified tokens a Verifier remembers. An
	// entry is a few hundred bytes plus the token's claims, so a full cache
	// of typical tokens costs a few megabytes.
	cacheSize = 10_000
	// cacheFor is the longest a verified token is remembered, whatever its
	// exp: a defence in depth for whatever the checks of a cache hit might
	// miss, short enough that it bounds how long such a miss could last,
	// long enough that a workload calling many times a second verifies its
	// token's signature about once a minute.
	cacheFor = time.Minute
)

// verified is a token that passed every check, with what a cache hit must
// check again.
type verified struct {
	id Identity
	is *issuer
	// keys is the issuer's key set whose key verified the signature: a hit
	// counts only while the issuer still serves this very set.
	keys      *keySet
	notBefore time.Time // nbf; zero when absent
}

// cacheEntry is one remembered token.
type cacheEntry struct {
	sum [sha256.Size]byte
	verified
	at    time.Time // when it was verified
	until time.Time // at + cacheFor
}

// tokenCache remembers the tokens a Verifier accepted, by the SHA-256 of
// the raw token, least recently used first out. It never remembers a
// refusal. It is safe for concurrent use.
type tokenCache struct {
	max int

	mu    sync.Mutex
	order *list.List // of *cacheEntry, most recently used at the front
	byKey map[[sha256.Size]byte]*list.Element
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, order: list.New(), byKey: make(map[[sha256.Size]byte]*list.Element)}
}

// get returns the entry of sum, marking it recently used; the caller checks
// that it is still valid.
func (c *tokenCache) get(sum [sha256.Size]byte) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[sum]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry), true
}

// put remembers e, replacing an entry of the same token, and drops the
// least recently used entries beyond the bound and those at the back whose
// time is up.
func (c *tokenCache) put(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[e.sum]; ok {
		el.Value = e
		c.order.MoveToFront(el)
	} else {
		c.byKey[e.sum] = c.order.PushFront(e)
	}
	for c.order.Len() > c.max {
		c.removeLocked(c.order.Back())
	}
	// Entries of tokens nobody presents any more drift to the back; drop a
	// few that are past their time, so that a quiet cache does not keep
	// them (and their claims) until the bound pushes them out.
	for range 2 {
		back := c.order.Back()
		if back == nil || back == c.order.Front() || !e.at.After(back.Value.(*cacheEntry).until) {
			break
		}
		c.removeLocked(back)
	}
}

// drop forgets e, unless its token has been remembered again since.
func (c *tokenCache) drop(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[e.sum]; ok && el.Value == e {
		c.removeLocked(el)
	}
}

func (c *tokenCache) removeLocked(el *list.Element) {
	c.order.Remove(el)
	delete(c.byKey, el.Value.(*cacheEntry).sum)
}

// len reports how many tokens are remembered.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// cached returns the identity of a token this Verifier accepted before, if
// a fresh verification would accept it now. A hit checks again what can
// change without the token changing: its issuer must still serve the very
// key set that verified it (a key set swapped in by a refresh, a reload or
// a changed bundle file ends the hits of every token verified before), exp
// and nbf must hold now with the leeway a fresh verification allows, and
// the clock must not be behind the time it was verified, since iat and
// max_token_lifetime without iat hold at any later time once they held.
// Everything else a verification checks is fixed by the token and this
// Verifier's configuration. Anything in doubt is a miss, and the fresh
// verification gives the answer and its reason.
func (v *Verifier) cached(sum [sha256.Size]byte, now time.Time) (Identity, bool) {
	e, ok := v.cache.get(sum)
	if !ok {
		return Identity{}, false
	}
	if e.is.keys.Load() != e.keys || now.Before(e.at) || !now.Before(e.until) ||
		!now.Before(e.id.ExpiresAt.Add(v.leeway)) ||
		(!e.notBefore.IsZero() && now.Before(e.notBefore.Add(-v.leeway))) {
		v.cache.drop(e)
		return Identity{}, false
	}
	return e.id, true
}

// remember caches a token that has just been verified at now.
func (v *Verifier) remember(sum [sha256.Size]byte, ok verified, now time.Time) {
	v.cache.put(&cacheEntry{sum: sum, verified: ok, at: now, until: now.Add(cacheFor)})
}
