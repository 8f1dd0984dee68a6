package idflow

import (
	"context"
	"time"
)

// CacheBackend is a raw key/value cache (memory, Redis, memcached). Handlers
// never see it: they get a cache.Scoped, whose keys derive from the Principal.
type CacheBackend interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
}
