package memcache

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// The options below exist for tests: one key space per test on a shared
// server, a short timeout against a closed port. serve uses the defaults.

// WithPrefix starts every key with prefix instead of DefaultPrefix. It must
// be printable ASCII without spaces and leave room for a hashed key.
func WithPrefix(prefix string) Option {
	return func(c *Cache) error {
		if !legal(prefix) || len(prefix)+2+sha256.Size*2 > maxKeyLen {
			return fmt.Errorf("memcache: prefix %q must be printable ASCII without spaces, at most %d bytes",
				prefix, maxKeyLen-2-sha256.Size*2)
		}
		c.prefix = prefix
		return nil
	}
}

// WithTimeout sets the socket read/write timeout (default 500ms).
func WithTimeout(d time.Duration) Option {
	return func(c *Cache) error { c.mc.Timeout = d; return nil }
}

// WithMaxIdleConns sets how many idle connections are kept per server
// (default 16): as many as requests that run at once, or they redial.
func WithMaxIdleConns(n int) Option {
	return func(c *Cache) error { c.mc.MaxIdleConns = n; return nil }
}

// legal reports whether s may appear in a memcached key.
func legal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
