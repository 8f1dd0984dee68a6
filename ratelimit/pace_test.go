package ratelimit

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// pacedRig is a Limiter of 10 writes a second in bursts of 2, pacing up to
// delay, on an injected clock; its sleep records each wait and moves the
// clock by it, unless block is set, when it waits for block (or ctx).
type pacedRig struct {
	clk   *clock
	l     *Limiter
	mu    sync.Mutex
	slept []time.Duration
	block chan struct{}
}

func newPacedRig(delay time.Duration) *pacedRig {
	r := &pacedRig{clk: &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}}
	limits := Limits{}
	limits[Write] = Limit{Count: 10, Per: time.Second, Burst: 2}
	r.l = New(limits, NewMemory(r.clk.Now), nil).Pace(delay, func(ctx context.Context, d time.Duration) error {
		r.mu.Lock()
		r.slept = append(r.slept, d)
		block := r.block
		r.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r.clk.Add(d)
		return nil
	})
	return r
}

func (r *pacedRig) sleeps() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.slept)
}

// TestWaitPacesAnOverLimitRequest: past her burst, alice's request waits
// for her next token (100 ms at 10/s) and is allowed; one whose turn is
// further off than the delay waits the delay and is refused, with the time
// still to go; bob's are never held.
func TestWaitPacesAnOverLimitRequest(t *testing.T) {
	ctx := context.Background()
	r := newPacedRig(time.Second)
	for range 2 {
		if res, _ := r.l.Wait(ctx, Write, "u:alice", nil); !res.Allowed {
			t.Fatal("alice's burst was refused")
		}
	}
	if len(r.sleeps()) != 0 {
		t.Fatalf("a request within the burst waited %v", r.sleeps())
	}
	res, ok := r.l.Wait(ctx, Write, "u:alice", nil)
	if !ok || !res.Allowed || !slices.Equal(r.sleeps(), []time.Duration{100 * time.Millisecond}) {
		t.Fatalf("alice's third request: %+v after waits %v; want allowed after 100ms", res, r.sleeps())
	}
	if res, _ := r.l.Wait(ctx, Write, "u:bob", nil); !res.Allowed || len(r.sleeps()) != 1 {
		t.Fatalf("bob's first request: %+v, waits %v", res, r.sleeps())
	}

	short := newPacedRig(30 * time.Millisecond)
	short.l.Allow(ctx, Write, "u:alice")
	short.l.Allow(ctx, Write, "u:alice")
	if res, _ := short.l.Wait(ctx, Write, "u:alice", nil); res.Allowed || res.RetryAfter != 70*time.Millisecond || !slices.Equal(short.sleeps(), []time.Duration{30 * time.Millisecond}) {
		t.Fatalf("a turn 100ms off under a delay of 30ms: %+v, waits %v; want refused after waiting 30ms, 70ms still to go", res, short.sleeps())
	}

	off := New(r.l.limits, NewMemory(r.clk.Now), nil).Pace(0, nil)
	off.Allow(ctx, Write, "u:alice")
	off.Allow(ctx, Write, "u:alice")
	if res, _ := off.Wait(ctx, Write, "u:alice", nil); res.Allowed {
		t.Fatal("a limiter that does not pace let a request over the limit through")
	}
}

// TestWaitingIsBounded: at most 16 of alice's requests wait at once — the
// 17th is refused at once — and each waits its turn (the n-th for n more
// tokens), not all for the same one; bob still waits; a request whose
// client left stops waiting and is refused.
func TestWaitingIsBounded(t *testing.T) {
	ctx := context.Background()
	r := newPacedRig(10 * time.Second)
	r.block = make(chan struct{})
	r.l.Allow(ctx, Write, "u:alice")
	r.l.Allow(ctx, Write, "u:alice")
	results := make(chan Result, maxWaitingPerCaller)
	for range maxWaitingPerCaller {
		go func() {
			res, _ := r.l.Wait(ctx, Write, "u:alice", nil)
			results <- res
		}()
	}
	for r.l.Waiting() < maxWaitingPerCaller {
		runtime.Gosched()
	}
	if res, _ := r.l.Wait(ctx, Write, "u:alice", nil); res.Allowed {
		t.Fatal("a 17th request of alice's waited")
	}
	waits := r.sleeps()
	slices.Sort(waits)
	for i, w := range waits {
		if want := time.Duration(i+1) * 100 * time.Millisecond; w != want {
			t.Fatalf("first waits %v; want 100ms, 200ms, … (each its own turn)", waits)
		}
	}
	// bob's request waits too (alice's queue is hers), until he leaves.
	r.l.Allow(ctx, Write, "u:bob")
	r.l.Allow(ctx, Write, "u:bob")
	bctx, leave := context.WithCancel(ctx)
	bob := make(chan Result)
	go func() {
		res, _ := r.l.Wait(bctx, Write, "u:bob", nil)
		bob <- res
	}()
	for r.l.Waiting() < maxWaitingPerCaller+1 {
		runtime.Gosched()
	}
	leave()
	if res := <-bob; res.Allowed {
		t.Fatal("bob's request was allowed after he left")
	}
	close(r.block)
	allowed := 0
	for range maxWaitingPerCaller {
		if (<-results).Allowed {
			allowed++
		}
	}
	if allowed != maxWaitingPerCaller || r.l.Waiting() != 0 {
		t.Fatalf("%d of alice's %d waiting requests allowed, %d still waiting", allowed, maxWaitingPerCaller, r.l.Waiting())
	}
}
