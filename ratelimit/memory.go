package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bounds of a Memory store: buckets per shard before full ones are swept.
const (
	memoryShards   = 64
	maxShardKeys   = 4096 // 256k buckets in all
	sweepEveryKeys = 1024 // a shard sweeps after this many new buckets
)

// Memory keeps buckets in this process (golang.org/x/time/rate). A bucket
// that has filled up again is the same as a fresh one, so it is dropped
// when its shard sweeps: memory follows the callers active in the last
// window, within a bound (a shard that is still full after a sweep drops
// all its buckets, which at worst lets their callers burst once more).
type Memory struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [memoryShards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	added   int
}

type bucket struct {
	lim   *rate.Limiter
	limit Limit
}

// NewMemory returns a Memory store on the clock now (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{now: now, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].buckets = map[string]*bucket{}
	}
	return m
}

// Allow implements Store.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (Result, error) {
	now := m.now()
	sh := &m.shards[maphash.String(m.seed, key)%memoryShards]
	sh.mu.Lock()
	b := sh.buckets[key]
	if b == nil || b.limit != l { // a changed limit starts a fresh bucket
		if sh.added++; sh.added >= sweepEveryKeys || len(sh.buckets) >= maxShardKeys {
			sh.sweep(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.perSecond()), l.Burst), limit: l}
		// A fresh bucket is full as of now, whatever clock the limiter
		// would otherwise read first.
		b.lim.SetLimitAt(now, rate.Limit(l.perSecond()))
		sh.buckets[key] = b
	}
	sh.mu.Unlock()
	// rate.Limiter has its own lock: the shard's is held only for the map.
	allowed := b.lim.AllowN(now, 1)
	tokens := b.lim.TokensAt(now)
	perSec := l.perSecond()
	res := Result{Allowed: allowed, Remaining: max(0, int(tokens)),
		ResetAfter: seconds((float64(l.Burst) - tokens) / perSec)}
	if !allowed {
		res.RetryAfter = seconds((1 - tokens) / perSec)
	}
	return res, nil
}

// Len is how many buckets m holds (for tests of its bound).
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}

// sweep drops the shard's full buckets, and every bucket when that leaves
// it at its bound. The caller holds sh.mu.
func (sh *memoryShard) sweep(now time.Time) {
	sh.added = 0
	for k, b := range sh.buckets {
		if b.lim.TokensAt(now) >= float64(b.limit.Burst) {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) >= maxShardKeys {
		clear(sh.buckets)
	}
}

func seconds(s float64) time.Duration {
	if s <= 0 || math.IsNaN(s) {
		return 0
	}
	return time.Duration(math.Ceil(s * float64(time.Second)))
}
