package auth

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// tokenCache remembers verified tokens by SHA-256 digest until they expire.
// It is sharded to keep lock contention low, and holds at most the size it
// was made with. An entry also keeps the last X-Idflow-Assertion signed for
// its token (Authenticator.Assertion): whatever drops the entry — expiry,
// eviction, a revocation that refuses the token — drops the assertion.
type tokenCache struct {
	shards   []tokenShard
	perShard int
}

type tokenShard struct {
	mu      sync.RWMutex
	entries map[[32]byte]*cachedToken
}

type cachedToken struct {
	tok       Token // never modified once cached
	expires   time.Time
	assertion atomic.Pointer[cachedAssertion]
}

// maxShards is the shard count of a large cache; a small one has fewer, so
// that shards × perShard never exceeds its size.
const maxShards = 16

func newTokenCache(size int) *tokenCache {
	n := min(maxShards, max(1, size))
	c := &tokenCache{shards: make([]tokenShard, n), perShard: max(1, size/n)}
	for i := range c.shards {
		c.shards[i].entries = make(map[[32]byte]*cachedToken)
	}
	return c
}

func (c *tokenCache) shard(digest [32]byte) *tokenShard {
	return &c.shards[int(digest[0])%len(c.shards)]
}

// get returns a copy of the cached token: callers may modify what they get
// without touching the cache or each other.
func (c *tokenCache) get(digest [32]byte, now time.Time) (Token, bool) {
	e := c.entry(digest, now)
	if e == nil {
		return Token{}, false
	}
	return cloneToken(e.tok), true
}

// entry returns the live entry of digest, or nil. Its tok is shared: read
// it, never modify it.
func (c *tokenCache) entry(digest [32]byte, now time.Time) *cachedToken {
	s := c.shard(digest)
	s.mu.RLock()
	e, ok := s.entries[digest]
	s.mu.RUnlock()
	if !ok {
		return nil
	}
	if !now.Before(e.expires) {
		s.mu.Lock()
		if s.entries[digest] == e {
			delete(s.entries, digest)
		}
		s.mu.Unlock()
		return nil
	}
	return e
}

func (c *tokenCache) put(digest [32]byte, tok Token, expires, now time.Time) {
	tok = cloneToken(tok)
	s := c.shard(digest)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[digest]; !ok && len(s.entries) >= c.perShard {
		for k, e := range s.entries {
			if !now.Before(e.expires) {
				delete(s.entries, k)
			}
		}
		// Still full: drop an arbitrary eighth, at least one (map order is
		// random).
		for k := range s.entries {
			if len(s.entries) < c.perShard-c.perShard/8 {
				break
			}
			delete(s.entries, k)
		}
	}
	s.entries[digest] = &cachedToken{tok: tok, expires: expires}
}

// cloneToken copies t's lists into one new backing array, each capped so
// that appending to one cannot overwrite the next.
func cloneToken(t Token) Token {
	p := &t.Principal
	buf := make([]string, 0, len(t.Audiences)+len(p.Roles)+len(p.Groups)+len(p.Scopes))
	take := func(s []string) []string {
		if s == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, s...)
		return buf[start:len(buf):len(buf)]
	}
	t.Audiences = take(t.Audiences)
	p.Roles = take(p.Roles)
	p.Groups = take(p.Groups)
	p.Scopes = take(p.Scopes)
	return t
}

// tokenDigest is the cache key of raw: SHA-256, fed through a stack buffer
// so that the token is not copied to the heap.
func tokenDigest(raw string) (d [32]byte) {
	h := sha256.New()
	var buf [512]byte
	for len(raw) > 0 {
		n := copy(buf[:], raw)
		h.Write(buf[:n])
		raw = raw[n:]
	}
	h.Sum(d[:0])
	return d
}
