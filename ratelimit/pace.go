package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Bounds of pacing: requests of one caller, and of all callers, waiting at
// once. Beyond them a request over its limit is refused at once.
const (
	maxWaitingPerCaller = 16
	maxWaiting          = 4096
)

// pacer holds requests over their limit until their bucket allows them.
type pacer struct {
	delay   time.Duration
	sleep   func(ctx context.Context, d time.Duration) error
	mu      sync.Mutex
	waiting map[string]int
	total   int
}

// Pace makes Wait hold a request over its limit for up to delay until its
// bucket allows it, instead of refusing it at once — as a proxy's request
// queue does (nginx limit_req with a burst) — and refuse it only when its
// turn has not come by then. A client that sends as fast as it is answered
// is then answered at its limit, and at most once per delay per waiting
// place with a refusal: it costs the server a waiting goroutine, not a
// stream of refusals to parse, authenticate and answer. A client within
// its limit never waits. At most 16 requests of one caller (4,096 in all)
// wait at once; the rest are refused at once. sleep is the wait (nil: a
// timer), a seam for tests. Pace is called once, before l is used; delay
// ≤ 0 turns pacing off.
func (l *Limiter) Pace(delay time.Duration, sleep func(ctx context.Context, d time.Duration) error) *Limiter {
	if delay <= 0 {
		l.pace = nil
		return l
	}
	if sleep == nil {
		sleep = sleepTimer
	}
	l.pace = &pacer{delay: delay, sleep: sleep, waiting: map[string]int{}}
	return l
}

// Wait is Allow, and when the request is over its limit and l paces,
// waits up to the pacing delay for the bucket to allow it; waiting, if
// not nil, is called once before it starts to. The answer is the last
// Allow's: a refusal when the turn did not come within the delay, too many
// of the caller's requests already wait, or ctx ended.
func (l *Limiter) Wait(ctx context.Context, c Class, caller string, waiting func()) (res Result, ok bool) {
	res, ok = l.Allow(ctx, c, caller)
	p := l.pace
	if !ok || res.Allowed || p == nil {
		return res, ok
	}
	ahead, entered := p.enter(caller)
	if !entered {
		return res, ok
	}
	defer p.leave(caller)
	if waiting != nil {
		waiting()
	}
	// Those already waiting take the next tokens: wait for one's turn, not
	// for all to wake at once and all but one to sleep again.
	interval := time.Duration(float64(time.Second) / l.Limit(c).perSecond())
	wait := res.RetryAfter + time.Duration(ahead)*interval
	for waited := time.Duration(0); !res.Allowed && waited < p.delay; {
		wait = min(max(wait, time.Millisecond), p.delay-waited)
		if p.sleep(ctx, wait) != nil {
			return res, ok
		}
		waited += wait
		res, _ = l.Allow(ctx, c, caller)
		wait = res.RetryAfter
	}
	return res, ok
}

// enter counts one more waiting request of caller, if the bounds allow,
// and answers how many of the caller's were already waiting.
func (p *pacer) enter(caller string) (ahead int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ahead = p.waiting[caller]
	if ahead >= maxWaitingPerCaller || p.total >= maxWaiting {
		return ahead, false
	}
	p.waiting[caller]++
	p.total++
	return ahead, true
}

func (p *pacer) leave(caller string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.waiting[caller]--; p.waiting[caller] <= 0 {
		delete(p.waiting, caller)
	}
}

// Waiting is how many requests wait in all (for tests and metrics).
func (l *Limiter) Waiting() int {
	if l.pace == nil {
		return 0
	}
	l.pace.mu.Lock()
	defer l.pace.mu.Unlock()
	return l.pace.total
}

func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
