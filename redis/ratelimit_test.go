package redis

import (
	"context"
	"testing"
	"time"

	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/ratelimit"
)

// TestRateLimitAcrossReplicas: two replicas, each with its own connection
// pool to one Redis, count alice's requests against one bucket: her burst
// is spent whichever replica serves her, then both refuse her with the
// time until her next request, while bob, on either, is unaffected.
func TestRateLimitAcrossReplicas(t *testing.T) {
	addr := testsvc.StartRedis(t)
	limits := ratelimit.Limits{}
	limits[ratelimit.Turn] = ratelimit.Limit{Count: 1, Per: time.Minute, Burst: 4}
	var errs []error
	onErr := func(err error) { errs = append(errs, err) }
	replicas := []*ratelimit.Limiter{
		ratelimit.New(limits, NewRateStore(open(t, addr)), onErr),
		ratelimit.New(limits, NewRateStore(open(t, addr)), onErr),
	}
	ctx := context.Background()
	for i := range 4 {
		res, ok := replicas[i%2].Allow(ctx, ratelimit.Turn, "u:alice")
		if !ok || !res.Allowed || res.Remaining != 3-i {
			t.Fatalf("alice's turn %d on replica %d: %+v", i+1, i%2, res)
		}
	}
	for i, r := range replicas {
		res, _ := r.Allow(ctx, ratelimit.Turn, "u:alice")
		if res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > time.Minute || res.ResetAfter < 3*time.Minute {
			t.Fatalf("alice's fifth turn on replica %d: %+v", i, res)
		}
		if res, _ := r.Allow(ctx, ratelimit.Turn, "u:bob"); !res.Allowed {
			t.Fatalf("bob on replica %d: %+v", i, res)
		}
	}
	if len(errs) != 0 {
		t.Fatalf("store errors: %v", errs)
	}
}

// TestRateStoreDownFallsBack: with Redis gone, a replica still counts
// alice's requests in its own buckets and says the store failed.
func TestRateStoreDownFallsBack(t *testing.T) {
	addr := testsvc.StartRedis(t)
	c, err := Open(context.Background(), "redis://"+addr+"/0")
	if err != nil {
		t.Fatal(err)
	}
	store := NewRateStore(c)
	c.Close()
	limits := ratelimit.Limits{}
	limits[ratelimit.Write] = ratelimit.Limit{Count: 1, Per: time.Minute, Burst: 1}
	failures := 0
	l := ratelimit.New(limits, store, func(error) { failures++ })
	first, _ := l.Allow(context.Background(), ratelimit.Write, "u:alice")
	second, _ := l.Allow(context.Background(), ratelimit.Write, "u:alice")
	if !first.Allowed || second.Allowed || failures != 2 {
		t.Fatalf("first %+v, second %+v, failures %d", first, second, failures)
	}
}

// BenchmarkRateStore compares one rate-limit decision on Redis with a bare
// PING on the same connection pool: the decision is one round trip (the
// script runs on the server):
//
//	go test ./redis -run '^$' -bench BenchmarkRateStore -count 6
func BenchmarkRateStore(b *testing.B) {
	c := open(b, testsvc.StartRedis(b))
	store := NewRateStore(c)
	lim := ratelimit.Limit{Count: 1_000_000, Per: time.Second, Burst: 1_000_000}
	ctx := context.Background()
	b.Run("ping", func(b *testing.B) {
		for b.Loop() {
			if err := c.rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("allow", func(b *testing.B) {
		for b.Loop() {
			if res, err := store.Allow(ctx, "read:u:alice", lim); err != nil || !res.Allowed {
				b.Fatal(res, err)
			}
		}
	})
}
