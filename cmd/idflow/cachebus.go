package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/events"
	"github.com/idflow/idflow/memcache"
	"github.com/idflow/idflow/redis"
)

// cacheAndBus opens the cache backend of IDFLOW_CACHE_URL and the run-event
// bus: Redis carries both (events reach WebSockets on every replica);
// memory and memcached keep events in this process. close closes what was
// opened (nil: nothing).
func cacheAndBus(ctx context.Context, cfg *config, log *slog.Logger) (_ idflow.CacheBackend, _ idflow.EventBus, close func() error, _ error) {
	u := cfg.CacheURL
	switch {
	case u == "" || u == "memory://":
		return cache.NewMemory(10000), events.NewMemory(0), nil, nil
	case strings.HasPrefix(u, "redis://") || strings.HasPrefix(u, "rediss://"):
		c, err := redis.Open(ctx, u)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("IDFLOW_CACHE_URL: %w", err)
		}
		bus := redis.NewBus(c, log.With("component", "redis-bus"))
		return redis.NewCache(c), bus, func() error { return errors.Join(bus.Close(), c.Close()) }, nil
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
