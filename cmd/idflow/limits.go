package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/metrics"
	"github.com/idflow/idflow/ratelimit"
	"github.com/idflow/idflow/redis"
)

// fairUse gives the API its request rate limits (IDFLOW_RATE_LIMITS) and
// the metric of every limit hit. With IDFLOW_CACHE_URL on Redis the
// buckets are there, so that a limit holds across replicas; otherwise in
// this process.
func fairUse(ctx context.Context, cfg *config, deps *httpapi.Deps, m *metrics.Metrics, c *cleanups, log *slog.Logger) error {
	hit, err := m.LimitsHit()
	if err != nil {
		return err
	}
	deps.OnLimit = hit
	var store ratelimit.Store
	if u := cfg.CacheURL; strings.HasPrefix(u, "redis://") || strings.HasPrefix(u, "rediss://") {
		rc, err := redis.Open(ctx, u)
		if err != nil {
			return fmt.Errorf("IDFLOW_CACHE_URL (rate limits): %w", err)
		}
		c.add(rc.Close)
		store = redis.NewRateStore(rc)
	}
	deps.Limiter = ratelimit.New(cfg.rateLimits, store, storeFailures(log))
	return nil
}

// storeFailures logs a failing rate-limit store at most once a minute:
// every request would otherwise log it.
func storeFailures(log *slog.Logger) func(error) {
	var last atomic.Int64
	return func(err error) {
		now := time.Now().Unix()
		if prev := last.Load(); now-prev >= 60 && last.CompareAndSwap(prev, now) {
			log.Warn("rate limits: the shared store failed; counting in this replica until it answers", "err", err)
		}
	}
}
