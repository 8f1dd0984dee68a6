package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/idflow/idflow"
)

// Cache is an idflow.CacheBackend on Redis: GET, SET … PX, DEL. Values are
// opaque bytes; keys are the caller's (cache.Scoped's) keys behind the
// prefix.
type Cache struct {
	rdb    *goredis.Client
	prefix string
}

var _ idflow.CacheBackend = (*Cache)(nil)

// NewCache returns a cache on c. Options: WithPrefix.
func NewCache(c *Client, opts ...Option) *Cache {
	cfg := newConfig(opts)
	return &Cache{rdb: c.rdb, prefix: cfg.prefix}
}

// Get returns the value of key; a miss is (nil, false, nil).
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := c.rdb.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis cache: get: %w", err)
	}
	if v == nil {
		v = []byte{} // a hit, even of an empty value
	}
	return v, true, nil
}

// Set stores value under key for ttl, rounded up to a millisecond. A ttl
// that is not positive stores nothing and removes any older value, as an
// entry that has already expired would (the memory backend behaves the
// same): no entry ever lives without a bound.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return c.Delete(ctx, key)
	}
	if r := ttl % time.Millisecond; r != 0 {
		ttl += time.Millisecond - r
	}
	if err := c.rdb.Set(ctx, c.prefix+key, value, ttl).Err(); err != nil {
		return fmt.Errorf("redis cache: set: %w", err)
	}
	return nil
}

// Delete removes key; deleting a missing key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := c.rdb.Del(ctx, c.prefix+key).Err(); err != nil {
		return fmt.Errorf("redis cache: delete: %w", err)
	}
	return nil
}
