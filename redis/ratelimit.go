package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/idflow/idflow/ratelimit"
)

// rateTimeout bounds one bucket's round trip: past it the request is
// counted by the replica's own fallback bucket instead of waiting on Redis.
const rateTimeout = time.Second

// RateStore keeps rate-limit buckets on Redis (github.com/go-redis/redis_rate,
// GCRA in one Lua script on Redis' own clock), so that every replica
// counts a caller's requests against the same bucket. One request is one
// round trip.
type RateStore struct {
	lim    *redis_rate.Limiter
	prefix string
}

// NewRateStore returns buckets on c, under the deployment's prefix.
func NewRateStore(c *Client, opts ...Option) *RateStore {
	cfg := newConfig(opts)
	return &RateStore{lim: redis_rate.NewLimiter(c.rdb), prefix: cfg.prefix + "rl:"}
}

// Allow implements ratelimit.Store.
func (s *RateStore) Allow(ctx context.Context, key string, l ratelimit.Limit) (ratelimit.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, rateTimeout)
	defer cancel()
	res, err := s.lim.Allow(ctx, s.prefix+key, redis_rate.Limit{Rate: l.Count, Period: l.Per, Burst: l.Burst})
	if err != nil {
		return ratelimit.Result{}, fmt.Errorf("redis: rate limit: %w", err)
	}
	out := ratelimit.Result{Allowed: res.Allowed > 0, Remaining: res.Remaining, ResetAfter: max(0, res.ResetAfter)}
	if !out.Allowed {
		out.RetryAfter = max(0, res.RetryAfter)
	}
	return out, nil
}

var _ ratelimit.Store = (*RateStore)(nil)
