package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	l, err := Parse("read=50/s:burst=100, write=10/s,turn=20/m,ingest=off,ws=3/h:burst=1")
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want[Read] = Limit{Count: 50, Per: time.Second, Burst: 100}
	want[Write] = Limit{Count: 10, Per: time.Second, Burst: 10}
	want[Turn] = Limit{Count: 20, Per: time.Minute, Burst: 20}
	want[Ingest] = Limit{}
	want[WS] = Limit{Count: 3, Per: time.Hour, Burst: 1}
	if l != want {
		t.Fatalf("got %v\nwant %v", l, want)
	}
	if l, err := Parse(""); err != nil || l != Defaults() {
		t.Fatalf("empty: %v %v", l, err)
	}
	// String writes what Parse reads.
	if back, err := Parse(l.String()); err != nil || back != l {
		t.Fatalf("round trip of %q: %v %v", l.String(), back, err)
	}
	for _, bad := range []string{
		"read", "read=", "reads=1/s", "read=1/s,read=2/s", "read=0/s", "read=-1/s", "read=+1/s",
		"read=1/d", "read=1", "read=1/s:burst=0", "read=1/s:bursts=2", "read=1/s:burst=1000001",
		"read=1000001/s", "read=1e3/s", "=1/s", "read=1/s,", "none=1/s", strings.Repeat("read=1/s,", 200),
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts it writes back to the
// same limits, each within its bounds.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"read=50/s:burst=100,write=10/s", "turn=off", "mcp=1/h", "ws=7/m:burst=3", "", "x=y", "read=1/s:burst="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		for _, c := range Classes() {
			lim := l[c]
			if !lim.Off() && (lim.Count > maxCount || lim.Burst < 1 || lim.Burst > maxBurst || lim.Per < time.Second || lim.Window() < 1) {
				t.Fatalf("%q: %s out of bounds: %+v", s, c, lim)
			}
		}
		back, err := Parse(l.String())
		if err != nil || back != l {
			t.Fatalf("%q: round trip %q: %v %v", s, l.String(), back, err)
		}
	})
}

// clock is a settable clock for buckets.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestAliceThrottledBobNot: alice spends her burst and is refused, with the
// time until her next request; bob's bucket is untouched; on the injected
// clock alice's bucket refills at the configured rate, no sleeping.
func TestAliceThrottledBobNot(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	limits := Limits{}
	limits[Write] = Limit{Count: 2, Per: time.Second, Burst: 4}
	l := New(limits, NewMemory(clk.Now), nil)
	ctx := context.Background()
	for i := range 4 {
		res, ok := l.Allow(ctx, Write, "u:alice")
		if !ok || !res.Allowed || res.Remaining != 3-i {
			t.Fatalf("alice's request %d: %+v %v", i+1, res, ok)
		}
	}
	res, _ := l.Allow(ctx, Write, "u:alice")
	if res.Allowed || res.Remaining != 0 || res.RetryAfter != 500*time.Millisecond || res.ResetAfter != 2*time.Second {
		t.Fatalf("alice's fifth request: %+v", res)
	}
	if res, _ := l.Allow(ctx, Write, "u:bob"); !res.Allowed || res.Remaining != 3 {
		t.Fatalf("bob: %+v", res)
	}
	// Another class is another bucket.
	if res, ok := l.Allow(ctx, Read, "u:alice"); !res.Allowed || ok {
		t.Fatalf("alice's read (no read limit): %+v %v", res, ok)
	}
	clk.Add(499 * time.Millisecond)
	if res, _ := l.Allow(ctx, Write, "u:alice"); res.Allowed {
		t.Fatalf("alice before her token is back: %+v", res)
	}
	clk.Add(time.Millisecond)
	if res, _ := l.Allow(ctx, Write, "u:alice"); !res.Allowed {
		t.Fatalf("alice once her token is back: %+v", res)
	}
	clk.Add(time.Hour)
	if res, _ := l.Allow(ctx, Write, "u:alice"); !res.Allowed || res.Remaining != 3 {
		t.Fatalf("alice after an hour: %+v", res)
	}
}

// TestMemoryIsBounded: a flood of distinct callers (anonymous peers) does
// not grow the store without bound; buckets that filled again are swept.
func TestMemoryIsBounded(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	m := NewMemory(clk.Now)
	lim := Limit{Count: 10, Per: time.Second, Burst: 10}
	for i := range 3 * memoryShards * maxShardKeys {
		m.Allow(context.Background(), "p:"+strings.Repeat("x", i%7)+string(rune(i)), lim)
		if i%1000 == 0 {
			clk.Add(time.Second)
		}
	}
	if n := m.Len(); n > memoryShards*maxShardKeys {
		t.Fatalf("%d buckets, over the bound %d", n, memoryShards*maxShardKeys)
	}
	clk.Add(time.Minute)
	m.Allow(context.Background(), "late", lim)
	for i := range memoryShards * sweepEveryKeys {
		m.Allow(context.Background(), "again"+string(rune(i)), lim)
	}
	if n := m.Len(); n > memoryShards*sweepEveryKeys+1 {
		t.Fatalf("%d buckets after a quiet minute: full buckets were not swept", n)
	}
}

type failingStore struct{ calls int }

func (f *failingStore) Allow(context.Context, string, Limit) (Result, error) {
	f.calls++
	return Result{}, errors.New("connection refused")
}

// TestStoreFailureFallsBack: when the shared store fails, each request is
// still counted, by the replica's own buckets: a failing Redis neither
// refuses everyone nor lifts the limit.
func TestStoreFailureFallsBack(t *testing.T) {
	limits := Limits{}
	limits[Turn] = Limit{Count: 1, Per: time.Minute, Burst: 2}
	var errs []error
	store := &failingStore{}
	l := New(limits, store, func(err error) { errs = append(errs, err) })
	got := []bool{}
	for range 3 {
		res, _ := l.Allow(context.Background(), Turn, "u:alice")
		got = append(got, res.Allowed)
	}
	if store.calls != 3 || len(errs) != 3 || !got[0] || !got[1] || got[2] {
		t.Fatalf("store calls %d, errors %d, allowed %v", store.calls, len(errs), got)
	}
}

func TestWindow(t *testing.T) {
	for _, tc := range []struct {
		l    Limit
		want int
	}{
		{Limit{Count: 50, Per: time.Second, Burst: 100}, 2},
		{Limit{Count: 60, Per: time.Minute, Burst: 20}, 20},
		{Limit{Count: 1000, Per: time.Second, Burst: 1}, 1},
		{Limit{Count: 1, Per: time.Hour, Burst: 3}, 10800},
	} {
		if got := tc.l.Window(); got != tc.want {
			t.Errorf("%s: window %d, want %d", tc.l, got, tc.want)
		}
	}
}
