// Package cachetest is the conformance suite every idflow.CacheBackend
// passes (memory, Redis, memcached): get, set, overwrite, delete, miss,
// arbitrary keys, binary and large values, expiry, concurrent use, and
// cache.Scoped's isolation between users on top of the backend.
//
// The suite takes the Principals it needs from its caller — a _test.go
// file builds them with auth/authtest, which only tests may import.
package cachetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/cache"
)

// Principals are the identities of the isolation cases.
type Principals struct {
	Alice, Bob idflow.Principal // two distinct users
	App        idflow.Principal // an app-only principal, which owns nothing
}

// Run runs the suite. newBackend returns a backend that is empty, or at
// least holds none of the keys the suite uses (each subtest gets its own).
func Run(t *testing.T, newBackend func(t testing.TB) idflow.CacheBackend, who Principals) {
	t.Helper()
	a, errA := who.Alice.Owner()
	b, errB := who.Bob.Owner()
	if errA != nil || errB != nil || a == b {
		t.Fatalf("cachetest: Alice and Bob must be two distinct users (%v, %v)", errA, errB)
	}
	if _, err := who.App.Owner(); err == nil {
		t.Fatal("cachetest: App must be an app-only principal")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, be idflow.CacheBackend, who Principals)
	}{
		{"GetSetOverwriteDelete", testGetSetOverwriteDelete},
		{"DistinctKeys", testDistinctKeys},
		{"BinaryValues", testBinaryValues},
		{"LargeValue", testLargeValue},
		{"NonPositiveTTL", testNonPositiveTTL},
		{"Expiry", testExpiry},
		{"Concurrent", testConcurrent},
		{"ScopedIsolation", testScopedIsolation},
		{"ScopedRefusesApp", testScopedRefusesApp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newBackend(t), who) })
	}
}

const hour = time.Hour

func mustSet(t testing.TB, be idflow.CacheBackend, key string, v []byte, ttl time.Duration) {
	t.Helper()
	if err := be.Set(context.Background(), key, v, ttl); err != nil {
		t.Fatalf("Set(%.40q): %v", key, err)
	}
}

func wantHit(t testing.TB, be idflow.CacheBackend, key string, want []byte) {
	t.Helper()
	got, ok, err := be.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%.40q): %v", key, err)
	}
	if !ok {
		t.Fatalf("Get(%.40q): miss, want %d bytes", key, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%.40q) = %.40q (%d bytes), want %.40q (%d bytes)", key, got, len(got), want, len(want))
	}
}

func wantMiss(t testing.TB, be idflow.CacheBackend, key string) {
	t.Helper()
	got, ok, err := be.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%.40q): %v", key, err)
	}
	if ok || got != nil {
		t.Fatalf("Get(%.40q) = (%.40q, %v), want a miss (nil, false)", key, got, ok)
	}
}

func testGetSetOverwriteDelete(t *testing.T, be idflow.CacheBackend, _ Principals) {
	ctx := context.Background()
	wantMiss(t, be, "cachetest:basic")
	mustSet(t, be, "cachetest:basic", []byte("v1"), hour)
	wantHit(t, be, "cachetest:basic", []byte("v1"))
	mustSet(t, be, "cachetest:basic", []byte("second value"), hour)
	wantHit(t, be, "cachetest:basic", []byte("second value"))
	if err := be.Delete(ctx, "cachetest:basic"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMiss(t, be, "cachetest:basic")
	if err := be.Delete(ctx, "cachetest:basic"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	// An empty value is a hit, not a miss.
	mustSet(t, be, "cachetest:empty", []byte{}, hour)
	got, ok, err := be.Get(ctx, "cachetest:empty")
	if err != nil || !ok || len(got) != 0 {
		t.Fatalf("Get(empty value) = (%q, %v, %v), want an empty hit", got, ok, err)
	}
}

// testDistinctKeys stores keys that a careless encoding would merge
// (escapes, separators, control bytes, long keys differing only at the end)
// and reads every one back.
func testDistinctKeys(t *testing.T, be idflow.CacheBackend, _ Principals) {
	long := strings.Repeat("k", 999)
	keys := []string{
		"", " ", "a b", "a+b", "a%20b", "a_b", "a-b", "a\nb", "a\rb", "a\x00b", "a\tb",
		"ä", "a\u00a0b", "\xff\xfe", "u:alice:doc:1", "u:alice:doc:1 ",
		"YWJj", "abc", // "YWJj" is base64 of "abc"
		long + "a", long + "b", // 1,000 bytes, differing in the last one
		strings.Repeat("x", 180), strings.Repeat("x", 181), strings.Repeat("x", 187), strings.Repeat("x", 188),
		strings.Repeat("\xf0\x9f\x94\x91", 300),
	}
	for i, k := range keys {
		mustSet(t, be, k, fmt.Appendf(nil, "value %d", i), hour)
	}
	for i, k := range keys {
		wantHit(t, be, k, fmt.Appendf(nil, "value %d", i))
	}
	for _, k := range keys {
		if err := be.Delete(context.Background(), k); err != nil {
			t.Fatalf("Delete(%.40q): %v", k, err)
		}
		wantMiss(t, be, k)
	}
}

func testBinaryValues(t *testing.T, be idflow.CacheBackend, _ Principals) {
	all := make([]byte, 0, 512)
	for i := range 256 {
		all = append(all, byte(i))
	}
	all = append(all, all...)
	values := map[string][]byte{
		"cachetest:bin:all":   all,
		"cachetest:bin:proto": []byte("x\r\nEND\r\nVALUE k 0 1\r\n$-1\r\n*1\r\n"),
		"cachetest:bin:nul":   {0, 0, 0},
	}
	for k, v := range values {
		mustSet(t, be, k, v, hour)
	}
	for k, v := range values {
		wantHit(t, be, k, v)
	}
}

func testLargeValue(t *testing.T, be idflow.CacheBackend, _ Principals) {
	v := make([]byte, 512<<10)
	_, _ = rand.Read(v)
	mustSet(t, be, "cachetest:large", v, hour)
	wantHit(t, be, "cachetest:large", v)
}

// testNonPositiveTTL: a non-positive ttl stores nothing (the entry is
// already expired) and hides any older value.
func testNonPositiveTTL(t *testing.T, be idflow.CacheBackend, _ Principals) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		mustSet(t, be, "cachetest:ttl0", []byte("old"), hour)
		mustSet(t, be, "cachetest:ttl0", []byte("new"), ttl)
		wantMiss(t, be, "cachetest:ttl0")
	}
}

// testExpiry: an entry with a short ttl is gone within a deadline while one
// with a long ttl stays. Polled, never slept.
func testExpiry(t *testing.T, be idflow.CacheBackend, _ Principals) {
	ctx := context.Background()
	mustSet(t, be, "cachetest:long", []byte("stays"), hour)
	mustSet(t, be, "cachetest:short", []byte("goes"), 150*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := be.Get(ctx, "cachetest:short")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry with a 150ms ttl still there after 10s")
		}
		poll := time.NewTimer(20 * time.Millisecond)
		<-poll.C
	}
	wantHit(t, be, "cachetest:long", []byte("stays"))
}

// testConcurrent: 8 goroutines write, read and delete their own keys and
// race on a shared one; each reads back what it wrote.
func testConcurrent(t *testing.T, be idflow.CacheBackend, _ Principals) {
	const workers, rounds = 8, 100
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("cachetest:conc:%d:%d", w, i%4)
				val := fmt.Appendf(nil, "w%d-r%d", w, i)
				if err := be.Set(ctx, key, val, hour); err != nil {
					t.Errorf("worker %d: Set: %v", w, err)
					return
				}
				got, ok, err := be.Get(ctx, key)
				if err != nil || !ok || !bytes.Equal(got, val) {
					t.Errorf("worker %d: Get(%s) = (%q, %v, %v), want %q", w, key, got, ok, err, val)
					return
				}
				if err := be.Set(ctx, "cachetest:conc:shared", val, hour); err != nil {
					t.Errorf("worker %d: Set shared: %v", w, err)
					return
				}
				got, ok, err = be.Get(ctx, "cachetest:conc:shared")
				if err != nil || !ok || !bytes.HasPrefix(got, []byte("w")) || !bytes.Contains(got, []byte("-r")) {
					t.Errorf("worker %d: Get(shared) = (%q, %v, %v): torn or missing", w, got, ok, err)
					return
				}
				if i%10 == 9 {
					if err := be.Delete(ctx, key); err != nil {
						t.Errorf("worker %d: Delete: %v", w, err)
						return
					}
					if _, ok, err := be.Get(ctx, key); err != nil || ok {
						t.Errorf("worker %d: Get after Delete = (%v, %v), want a miss", w, ok, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// testScopedIsolation: through cache.Scoped, a user never reads, overwrites
// or deletes another user's entry of the same kind and id.
func testScopedIsolation(t *testing.T, be idflow.CacheBackend, who Principals) {
	ctx := context.Background()
	s := cache.NewScoped(be, hour)
	alice, bob := who.Alice, who.Bob
	if err := s.Set(ctx, alice, "doc", "d1", []byte("alice's secret")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, bob, "doc", "d1"); err != nil || ok || v != nil {
		t.Fatalf("bob reads alice's entry: (%q, %v, %v)", v, ok, err)
	}
	if err := s.Set(ctx, bob, "doc", "d1", []byte("bob's")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, alice, "doc", "d1"); err != nil || !ok || string(v) != "alice's secret" {
		t.Fatalf("alice's entry after bob's Set = (%q, %v, %v)", v, ok, err)
	}
	if err := s.Delete(ctx, bob, "doc", "d1"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, alice, "doc", "d1"); err != nil || !ok || string(v) != "alice's secret" {
		t.Fatalf("alice's entry after bob's Delete = (%q, %v, %v)", v, ok, err)
	}
	// The backend holds alice's entry under her key, and only there.
	k, err := cache.Key(alice, "doc", "d1")
	if err != nil {
		t.Fatal(err)
	}
	wantHit(t, be, k, []byte("alice's secret"))
	wantMiss(t, be, "doc:d1")
	// Ids that look like another user's key stay in bob's space.
	for _, id := range []string{k, "d1:u:" + mustOwner(t, alice), "../d1", "d1%00", "*"} {
		if v, ok, err := s.Get(ctx, bob, "doc", id); err != nil || ok {
			t.Fatalf("bob Get(doc, %q) = (%q, %v, %v), want a miss", id, v, ok, err)
		}
	}
	if err := s.Delete(ctx, alice, "doc", "d1"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(ctx, alice, "doc", "d1"); err != nil || ok {
		t.Fatalf("alice's entry after her Delete: (%v, %v), want a miss", ok, err)
	}
}

// testScopedRefusesApp: an app-only principal owns no cache entries.
func testScopedRefusesApp(t *testing.T, be idflow.CacheBackend, who Principals) {
	ctx := context.Background()
	s := cache.NewScoped(be, hour)
	if err := s.Set(ctx, who.Alice, "doc", "d1", []byte("alice's")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, who.App, "doc", "d1", []byte("app")); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("app Set: err = %v, want forbidden", err)
	}
	if v, ok, err := s.Get(ctx, who.App, "doc", "d1"); idflow.ErrorCode(err) != idflow.EFORBIDDEN || ok || v != nil {
		t.Fatalf("app Get = (%q, %v, %v), want forbidden", v, ok, err)
	}
	if err := s.Delete(ctx, who.App, "doc", "d1"); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("app Delete: err = %v, want forbidden", err)
	}
	if v, ok, err := s.Get(ctx, who.Alice, "doc", "d1"); err != nil || !ok || string(v) != "alice's" {
		t.Fatalf("alice's entry after the app's attempts = (%q, %v, %v)", v, ok, err)
	}
}

func mustOwner(t testing.TB, p idflow.Principal) string {
	t.Helper()
	o, err := p.Owner()
	if err != nil {
		t.Fatal(err)
	}
	return o
}
