package redis

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/idflow/idflow/budget"
)

// BudgetCounter keeps model token budgets' counters on Redis, so that
// every replica draws on the same budget. A reservation checks and adds in
// one script, so concurrent calls on any replicas never pass a budget
// together.
type BudgetCounter struct {
	rdb    *goredis.Client
	prefix string
	cfg    config
}

// NewBudgetCounter returns counters on c, under the deployment's prefix.
func NewBudgetCounter(c *Client, opts ...Option) *BudgetCounter {
	cfg := newConfig(opts)
	return &BudgetCounter{rdb: c.rdb, prefix: cfg.prefix + "budget:", cfg: cfg}
}

// reserve: KEYS the counters; ARGV[1] the tokens, then each key's limit
// (0: none), then each key's time to live (milliseconds). Answers 0 when added,
// else the 1-based index of the key that would pass its limit.
var reserve = goredis.NewScript(`
local n = tonumber(ARGV[1])
local k = #KEYS
for i = 1, k do
  local limit = tonumber(ARGV[1 + i])
  if limit > 0 and tonumber(redis.call('GET', KEYS[i]) or '0') + n > limit then
    return i
  end
end
for i = 1, k do
  redis.call('INCRBY', KEYS[i], n)
  redis.call('PEXPIRE', KEYS[i], ARGV[1 + k + i])
end
return 0
`)

func (c *BudgetCounter) names(keys []budget.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = c.prefix + k.Name
	}
	return out
}

func (c *BudgetCounter) Reserve(ctx context.Context, keys []budget.Key, n int64) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.opTimeout)
	defer cancel()
	args := []any{n}
	for _, k := range keys {
		args = append(args, k.Limit)
	}
	for _, k := range keys {
		args = append(args, k.TTL.Milliseconds())
	}
	i, err := reserve.Run(ctx, c.rdb, c.names(keys), args...).Int()
	if err != nil {
		return 0, fmt.Errorf("redis: budget reserve: %w", err)
	}
	return i - 1, nil
}

func (c *BudgetCounter) Add(ctx context.Context, keys []budget.Key, n int64) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.opTimeout)
	defer cancel()
	_, err := c.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for i, name := range c.names(keys) {
			p.IncrBy(ctx, name, n)
			p.PExpire(ctx, name, keys[i].TTL)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: budget add: %w", err)
	}
	return nil
}

func (c *BudgetCounter) Get(ctx context.Context, keys []budget.Key) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.opTimeout)
	defer cancel()
	vals, err := c.rdb.MGet(ctx, c.names(keys)...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: budget get: %w", err)
	}
	out := make([]int64, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("redis: budget get: %q is not a count", s)
			}
			out[i] = n
		}
	}
	return out, nil
}

func (c *BudgetCounter) Reset(ctx context.Context, keys []budget.Key) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.opTimeout)
	defer cancel()
	if err := c.rdb.Del(ctx, c.names(keys)...).Err(); err != nil {
		return fmt.Errorf("redis: budget reset: %w", err)
	}
	return nil
}

var _ budget.Counter = (*BudgetCounter)(nil)
