package vault_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// BenchmarkGetCached is one Get of a cached, fresh token (goal ≤ 5 µs).
//
//	go test ./vault -run '^$' -bench 'BenchmarkGetCached' -benchtime 2000000x -count 5
func BenchmarkGetCached(b *testing.B) {
	w := newWorld(b, nil)
	w.connect(b, alice, time.Hour)
	ctx := context.Background()
	if _, err := w.v.Get(ctx, alice, "fake"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := w.v.Get(ctx, alice, "fake"); err != nil {
			b.Fatal(err)
		}
	}
	if n := w.te.count.Load(); n != 0 {
		b.Fatalf("%d refreshes during a cached benchmark", n)
	}
}

// BenchmarkGetCachedParallel is BenchmarkGetCached from every P, over 1,000
// users.
//
//	go test ./vault -run '^$' -bench 'BenchmarkGetCachedParallel' -count 5
func BenchmarkGetCachedParallel(b *testing.B) {
	w := newWorld(b, nil)
	users := make([]idflow.Principal, 1000)
	for i := range users {
		users[i] = authtest.User(fmt.Sprintf("user-%04d", i), "t-one")
		w.connect(b, users[i], time.Hour)
		if _, err := w.v.Get(context.Background(), users[i], "fake"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := w.v.Get(context.Background(), users[i%len(users)], "fake"); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkRefreshStorm: 1,000 users × 100 concurrent callers, every token
// past its refresh point, against the counting fake token endpoint. Each
// iteration must make exactly 1,000 refresh requests (reported as
// refreshes/op).
//
//	go test ./vault -run '^$' -bench 'BenchmarkRefreshStorm' -benchtime 5x -count 5
func BenchmarkRefreshStorm(b *testing.B) {
	const users, callers = 1000, 100
	w := newWorld(b, nil)
	ps := make([]idflow.Principal, users)
	for i := range ps {
		ps[i] = authtest.User(fmt.Sprintf("user-%04d", i), "t-one")
		w.connect(b, ps[i], time.Hour)
	}
	ctx := context.Background()
	var total int64
	b.ResetTimer()
	for b.Loop() {
		w.clock.Advance(56 * time.Minute) // every token now has < 5 minutes left
		before := w.te.count.Load()
		var wg sync.WaitGroup
		errs := make(chan error, users*callers)
		for _, p := range ps {
			for range callers {
				wg.Go(func() {
					if _, err := w.v.Get(ctx, p, "fake"); err != nil {
						errs <- err
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		n := w.te.count.Load() - before
		if n != users {
			b.Fatalf("%d refresh requests for %d users × %d callers, want exactly %d", n, users, callers, users)
		}
		total += n
	}
	b.ReportMetric(float64(total)/float64(b.N), "refreshes/op")
}
