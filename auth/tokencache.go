package auth

import (
	"sync"
	"time"
)

// tokenCache remembers verified tokens by SHA-256 digest until they expire.
// It is sharded to keep lock contention low and bounded in size.
type tokenCache struct {
	shards   [16]tokenShard
	perShard int
}

type tokenShard struct {
	mu      sync.RWMutex
	entries map[[32]byte]cachedToken
}

type cachedToken struct {
	tok     Token
	expires time.Time
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(1, size/16)}
	for i := range c.shards {
		c.shards[i].entries = make(map[[32]byte]cachedToken)
	}
	return c
}

func (c *tokenCache) get(digest [32]byte, now time.Time) (Token, bool) {
	s := &c.shards[digest[0]&15]
	s.mu.RLock()
	e, ok := s.entries[digest]
	s.mu.RUnlock()
	if !ok {
		return Token{}, false
	}
	if !now.Before(e.expires) {
		s.mu.Lock()
		delete(s.entries, digest)
		s.mu.Unlock()
		return Token{}, false
	}
	return e.tok, true
}

func (c *tokenCache) put(digest [32]byte, tok Token, expires time.Time) {
	s := &c.shards[digest[0]&15]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= c.perShard {
		now := time.Now()
		for k, e := range s.entries {
			if !now.Before(e.expires) {
				delete(s.entries, k)
			}
		}
		// Still full: drop an arbitrary eighth (map order is random).
		for k := range s.entries {
			if len(s.entries) < c.perShard-c.perShard/8 {
				break
			}
			delete(s.entries, k)
		}
	}
	s.entries[digest] = cachedToken{tok: tok, expires: expires}
}
