package memcache

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/cache/cachetest"
	"github.com/idflow/idflow/internal/testsvc"
)

func open(t testing.TB, addr string, opts ...Option) *Cache {
	t.Helper()
	c, err := Open("memcached://"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	addr := testsvc.StartMemcached(t)
	cachetest.Run(t, func(t testing.TB) idflow.CacheBackend {
		// One server, one key space per subtest.
		return open(t, addr, WithPrefix(t.Name()+":"))
	}, cachetest.Principals{
		Alice: authtest.User("alice", "t-one"),
		Bob:   authtest.User("bob", "t-one"),
		App:   authtest.App("svc"),
	})
}

func TestSetGetDeleteMiss(t *testing.T) {
	addr := testsvc.StartMemcached(t)
	c := open(t, addr)
	ctx := context.Background()
	for _, key := range []string{"plain", "a key with spaces\tand\ncontrol", strings.Repeat("é", 500)} {
		if _, ok, err := c.Get(ctx, key); err != nil || ok {
			t.Fatalf("Get(%.20q) before Set = (%v, %v), want a miss", key, ok, err)
		}
		if err := c.Set(ctx, key, []byte("value of "+key), time.Hour); err != nil {
			t.Fatalf("Set(%.20q): %v", key, err)
		}
		v, ok, err := c.Get(ctx, key)
		if err != nil || !ok || string(v) != "value of "+key {
			t.Fatalf("Get(%.20q) = (%.20q, %v, %v)", key, v, ok, err)
		}
		// The mapped key is a legal memcached key, and it is what the
		// server stores (asked over the text protocol).
		mk := c.Key(key)
		if len(mk) > maxKeyLen || !legal(mk) {
			t.Fatalf("mapped key %q is not a legal memcached key", mk)
		}
		reply, err := testsvc.RoundTrip(addr, "get "+mk+"\r\n")
		if err != nil || !strings.HasPrefix(reply, "VALUE "+mk+" ") {
			t.Fatalf("server answered %q, %v for %s", reply, err, mk)
		}
		if err := c.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%.20q): %v", key, err)
		}
		if _, ok, err := c.Get(ctx, key); err != nil || ok {
			t.Fatalf("Get(%.20q) after Delete = (%v, %v), want a miss", key, ok, err)
		}
	}
}

func TestKeyMapping(t *testing.T) {
	c := &Cache{prefix: DefaultPrefix}
	k1000 := strings.Repeat("k", 999)
	seen := map[string]string{}
	for _, key := range []string{
		"", "a b", "a+b", "a_b", "h:" + strings.Repeat("0", 64),
		k1000 + "a", k1000 + "b", strings.Repeat("x", 181), strings.Repeat("x", 182),
	} {
		mk := c.Key(key)
		if len(mk) > maxKeyLen || !legal(mk) || !strings.HasPrefix(mk, DefaultPrefix) {
			t.Errorf("Key(%.20q) = %q: not a legal prefixed memcached key", key, mk)
		}
		if other, dup := seen[mk]; dup {
			t.Errorf("Key(%.20q) = Key(%.20q) = %q", key, other, mk)
		}
		seen[mk] = key
	}
	// Long keys are hashed whole: the full SHA-256, never a truncation.
	if mk := c.Key(k1000 + "a"); len(mk) != len(DefaultPrefix)+2+64 || !strings.HasPrefix(mk, DefaultPrefix+"h:") {
		t.Errorf("long key mapped to %q", mk)
	}
	// Short keys stay readable: prefix + base64url.
	if mk := c.Key("u:alice:doc:1"); mk != DefaultPrefix+"dTphbGljZTpkb2M6MQ" {
		t.Errorf("Key(u:alice:doc:1) = %q", mk)
	}
}

func TestExpiration(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		ttl  time.Duration
		want int32
	}{
		{time.Nanosecond, 1},
		{999 * time.Millisecond, 1},
		{time.Second, 1},
		{1001 * time.Millisecond, 2},
		{time.Hour, 3600},
		{30 * 24 * time.Hour, 2592000}, // still relative
		{30*24*time.Hour + time.Second, int32(now.Unix()) + 2592001}, // absolute
		{1 << 62, 1<<31 - 1}, // clamped, no overflow
	} {
		if got := expiration(c.ttl, now); got != c.want {
			t.Errorf("expiration(%s) = %d, want %d", c.ttl, got, c.want)
		}
	}
}

func TestTTLIsHonouredAndLongTTLsAreNotExpiredAtOnce(t *testing.T) {
	addr := testsvc.StartMemcached(t)
	c := open(t, addr)
	ctx := context.Background()
	// Past 30 days memcached reads the expiration as a Unix time: sent as
	// relative seconds, it would be a date in 1970 and expire at once.
	if err := c.Set(ctx, "long", []byte("v"), 40*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get(ctx, "long"); err != nil || !ok {
		t.Fatalf("entry with a 40-day ttl: (%v, %v), want a hit", ok, err)
	}
}

func TestOpen(t *testing.T) {
	for _, u := range []string{
		"", "memcached://", "redis://127.0.0.1:11211", "memcached://127.0.0.1",
		"memcached://127.0.0.1:11211,", "memcached://user@127.0.0.1:11211", "memcached://:11211",
	} {
		if c, err := Open(u); err == nil {
			_ = c.Close()
			t.Errorf("Open(%q) succeeded", u)
		}
	}
	if got, err := parseURL("memcached://10.0.0.1:11211,[::1]:11212/"); err != nil || len(got) != 2 || got[1] != "[::1]:11212" {
		t.Errorf("parseURL = %v, %v", got, err)
	}
	// Nobody listens: Open pings, and fails.
	if c, err := Open("memcached://127.0.0.1:1", WithTimeout(200*time.Millisecond)); err == nil {
		_ = c.Close()
		t.Error("Open of a closed port succeeded")
	}
	if _, err := Open("memcached://127.0.0.1:1", WithPrefix("has space")); err == nil {
		t.Error("a prefix with a space was accepted")
	}
}

func TestScopedKeepsUsersApart(t *testing.T) {
	addr := testsvc.StartMemcached(t)
	c := open(t, addr)
	ctx := context.Background()
	s := cache.NewScoped(c, time.Hour)
	alice, bob := authtest.User("alice", "t-one"), authtest.User("bob", "t-one")
	if err := s.Set(ctx, alice, "memory", "m1", []byte("alice only")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, bob, "memory", "m1"); err != nil || ok {
		t.Fatalf("bob sees alice's entry: (%q, %v, %v)", v, ok, err)
	}
	if v, ok, err := s.Get(ctx, alice, "memory", "m1"); err != nil || !ok || !bytes.Equal(v, []byte("alice only")) {
		t.Fatalf("alice's entry = (%q, %v, %v)", v, ok, err)
	}
	if _, _, err := s.Get(ctx, authtest.App("svc"), "memory", "m1"); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("app principal: err = %v, want forbidden", err)
	}
}

func BenchmarkScopedGet(b *testing.B) {
	addr := testsvc.StartMemcached(b)
	c := open(b, addr)
	ctx := context.Background()
	s := cache.NewScoped(c, time.Hour)
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
