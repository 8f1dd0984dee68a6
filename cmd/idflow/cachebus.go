package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/events"
	"github.com/idflow/idflow/memcache"
	"github.com/idflow/idflow/redis"
)

// isRedisURL reports whether IDFLOW_CACHE_URL names Redis.
func isRedisURL(u string) bool {
	return strings.HasPrefix(u, "redis://") || strings.HasPrefix(u, "rediss://")
}

// sharedRedis opens the one Redis client of IDFLOW_CACHE_URL that the
// cache, the run-event bus, the rate limits and budgets, and the lifecycle
// announcements share (nil when the cache is not Redis).
func sharedRedis(ctx context.Context, cfg *config) (*redis.Client, error) {
	if !isRedisURL(cfg.CacheURL) {
		return nil, nil
	}
	c, err := redis.Open(ctx, cfg.CacheURL)
	if err != nil {
		return nil, fmt.Errorf("IDFLOW_CACHE_URL: %w", err)
	}
	return c, nil
}

// cacheAndBus opens the cache backend of IDFLOW_CACHE_URL and the run-event
// bus: Redis (rc) carries both (events reach WebSockets on every replica);
// memory and memcached keep events in this process. close closes what was
// opened (nil: nothing).
func cacheAndBus(cfg *config, rc *redis.Client, log *slog.Logger) (_ idflow.CacheBackend, _ idflow.EventBus, close func() error, _ error) {
	u := cfg.CacheURL
	switch {
	case u == "" || u == "memory://":
		return cache.NewMemory(10000), events.NewMemory(0), nil, nil
	case rc != nil:
		bus := redis.NewBus(rc, log.With("component", "redis-bus"))
		return redis.NewCache(rc), bus, bus.Close, nil
	case strings.HasPrefix(u, "memcached://"):
		c, err := memcache.Open(u)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("IDFLOW_CACHE_URL: %w", err)
		}
		if isPostgresURL(cfg.DatabaseURL) {
			log.Warn("run events stay on the replica that runs them: use redis:// as IDFLOW_CACHE_URL to stream across replicas")
		}
		return c, events.NewMemory(0), c.Close, nil
	}
	return nil, nil, nil, fmt.Errorf("IDFLOW_CACHE_URL: unsupported %q (memory://, redis://, memcached://)", redactURL(u))
}
