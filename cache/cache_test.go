package cache_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/cache/cachetest"
)

func principals() cachetest.Principals {
	return cachetest.Principals{
		Alice: authtest.User("alice", "t-one"),
		Bob:   authtest.User("bob", "t-one"),
		App:   authtest.App("svc"),
	}
}

func TestMemoryConformance(t *testing.T) {
	cachetest.Run(t, func(testing.TB) idflow.CacheBackend { return cache.NewMemory(0) }, principals())
}

// Keys of different users never meet, whatever their ids contain.
func TestKeyCannotBeForged(t *testing.T) {
	type ref struct {
		user, kind, id string
	}
	pairs := [][2]ref{
		{{"a:b", "k", "x"}, {"a", "b:k", "x"}},
		{{"a", "k", "x:u:b:k:y"}, {"b", "k", "y"}},
		{{"a%3Ab", "k", "x"}, {"a:b", "k", "x"}},
		{{"a b", "k", "x"}, {"a+b", "k", "x"}},
		{{"a", "k", "x y"}, {"a", "k", "x+y"}},
	}
	for _, p := range pairs {
		k1, err1 := cache.Key(authtest.User(p[0].user, "t"), p[0].kind, p[0].id)
		k2, err2 := cache.Key(authtest.User(p[1].user, "t"), p[1].kind, p[1].id)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if k1 == k2 {
			t.Errorf("%+v and %+v share the key %q", p[0], p[1], k1)
		}
	}
	for _, p := range []idflow.Principal{authtest.App("svc"), authtest.Malformed("alice", ""), authtest.Malformed("", idflow.KindUser)} {
		if k, err := cache.Key(p, "k", "x"); idflow.ErrorCode(err) != idflow.EFORBIDDEN || k != "" {
			t.Errorf("Key(%+v) = (%q, %v), want forbidden", p, k, err)
		}
	}
}

func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	m := cache.NewMemory(2)
	_ = m.Set(ctx, "a", []byte("1"), time.Hour)
	_ = m.Set(ctx, "b", []byte("2"), time.Hour)
	if _, ok, _ := m.Get(ctx, "a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	_ = m.Set(ctx, "c", []byte("3"), time.Hour)
	if _, ok, _ := m.Get(ctx, "b"); ok {
		t.Fatal("b survived eviction")
	}
	if v, ok, _ := m.Get(ctx, "a"); !ok || !bytes.Equal(v, []byte("1")) {
		t.Fatalf("a = %q, %v", v, ok)
	}
	if m.Len() != 2 {
		t.Fatalf("Len = %d, want 2", m.Len())
	}
}

// BenchmarkScopedGet is the hit path of cache.Scoped on the memory backend,
// with a 1 KiB value (the Redis and memcached benchmarks use the same).
func BenchmarkScopedGet(b *testing.B) {
	benchScopedGet(b, cache.NewMemory(0))
}

func benchScopedGet(b *testing.B, be idflow.CacheBackend) {
	ctx := context.Background()
	s := cache.NewScoped(be, time.Hour)
	alice := authtest.User("alice", "t-one")
	value := bytes.Repeat([]byte("v"), 1<<10)
	if err := s.Set(ctx, alice, "doc", "doc_0123456789abcdef", value); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		v, ok, err := s.Get(ctx, alice, "doc", "doc_0123456789abcdef")
		if err != nil || !ok || len(v) != len(value) {
			b.Fatalf("Get = (%d bytes, %v, %v)", len(v), ok, err)
		}
	}
}
