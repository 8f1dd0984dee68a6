// Package ratelimit holds idflow's per-caller request rate limits: one
// token bucket (GCRA) per route class and caller. The caller's key comes
// from the verified Principal (or the peer address of a request that has
// none), never from anything the client chose; httpapi builds it.
//
// The buckets live in a Store: Memory (golang.org/x/time/rate) on one
// replica, or Redis (package redis, github.com/go-redis/redis_rate) so
// that a limit holds across replicas. A Store that fails falls back to a
// Memory one, so a Redis outage bounds each replica on its own instead of
// refusing everyone or nobody.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Class is a kind of request with a limit of its own (routes.go names one
// per route). The zero Class is none of them: a route table can tell a
// class it did not name from None.
type Class uint8

const (
	None   Class = iota + 1 // never limited: health checks, metrics, keys
	Read                    // reads (GET)
	Write                   // writes (POST, PUT, PATCH, DELETE)
	Turn                    // agent turns (POST …/messages)
	Ingest                  // document ingest
	MCP                     // MCP messages (tool calls included)
	WS                      // WebSocket opens
	numClasses
)

var classNames = [numClasses]string{"invalid", "none", "read", "write", "turn", "ingest", "mcp", "ws"}

// String is the class's name in IDFLOW_RATE_LIMITS, in metrics and in the
// RateLimit headers.
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return classNames[0]
}

// Classes are the classes that can be limited, in order.
func Classes() []Class { return []Class{Read, Write, Turn, Ingest, MCP, WS} }

// Limit is a token bucket: Count requests per Per, with bursts of up to
// Burst. The zero Limit is no limit.
type Limit struct {
	Count int
	Per   time.Duration
	Burst int
}

// Off reports whether l limits nothing.
func (l Limit) Off() bool { return l.Count <= 0 }

// perSecond is l's rate in requests per second.
func (l Limit) perSecond() float64 { return float64(l.Count) / l.Per.Seconds() }

// Window is how long an empty bucket takes to fill again (whole seconds,
// at least 1): the w of the RateLimit-Policy header.
func (l Limit) Window() int {
	return max(1, int(math.Ceil(float64(l.Burst)/l.perSecond())))
}

// String writes l as IDFLOW_RATE_LIMITS does.
func (l Limit) String() string {
	if l.Off() {
		return "off"
	}
	s := strconv.Itoa(l.Count) + "/" + unitOf(l.Per)
	if l.Burst != l.Count {
		s += ":burst=" + strconv.Itoa(l.Burst)
	}
	return s
}

func unitOf(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	}
	return "h"
}

// Limits are the limits of every class; a class without one is not
// limited.
type Limits [numClasses]Limit

// Defaults are limits a person using the UI or an agent never meets: they
// stop scripts gone wrong and floods, not work.
func Defaults() Limits {
	var l Limits
	l[Read] = Limit{Count: 100, Per: time.Second, Burst: 200}
	l[Write] = Limit{Count: 30, Per: time.Second, Burst: 60}
	l[Turn] = Limit{Count: 60, Per: time.Minute, Burst: 20}
	l[Ingest] = Limit{Count: 60, Per: time.Minute, Burst: 20}
	l[MCP] = Limit{Count: 50, Per: time.Second, Burst: 100}
	l[WS] = Limit{Count: 60, Per: time.Minute, Burst: 30}
	return l
}

// String writes l in the syntax Parse reads.
func (l Limits) String() string {
	var parts []string
	for _, c := range Classes() {
		parts = append(parts, c.String()+"="+l[c].String())
	}
	return strings.Join(parts, ",")
}

// Bounds of the syntax, so that no setting overflows a bucket's arithmetic.
const (
	maxCount = 1_000_000
	maxBurst = 1_000_000
	maxSpec  = 1024
)

// Parse reads IDFLOW_RATE_LIMITS: comma-separated class=spec entries over
// the Defaults, spec being off, or N/s, N/m or N/h with an optional
// :burst=B (default N), e.g.
//
//	read=50/s:burst=100,write=10/s,turn=20/m,ingest=off
//
// Unknown classes, repeated classes, and counts or bursts outside 1 to
// 1,000,000 are refused: a typo never silently lifts or keeps a limit.
func Parse(s string) (Limits, error) {
	l := Defaults()
	if len(s) > maxSpec {
		return l, fmt.Errorf("rate limits: longer than %d bytes", maxSpec)
	}
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	var seen [numClasses]bool
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		name, spec, ok := strings.Cut(entry, "=")
		if !ok {
			return l, fmt.Errorf("rate limits: %q is not class=limit", entry)
		}
		c, ok := classNamed(strings.TrimSpace(name))
		if !ok {
			return l, fmt.Errorf("rate limits: unknown class %q (known: read, write, turn, ingest, mcp, ws)", name)
		}
		if seen[c] {
			return l, fmt.Errorf("rate limits: %s is given twice", c)
		}
		seen[c] = true
		lim, err := parseLimit(strings.TrimSpace(spec))
		if err != nil {
			return l, fmt.Errorf("rate limits: %s: %w", c, err)
		}
		l[c] = lim
	}
	return l, nil
}

func classNamed(name string) (Class, bool) {
	for _, c := range Classes() {
		if c.String() == name {
			return c, true
		}
	}
	return None, false
}

func parseLimit(spec string) (Limit, error) {
	if spec == "off" {
		return Limit{}, nil
	}
	rate, opts, hasOpts := strings.Cut(spec, ":")
	num, unit, ok := strings.Cut(rate, "/")
	if !ok {
		return Limit{}, fmt.Errorf("%q is not N/s, N/m, N/h or off", spec)
	}
	n, err := boundedInt(num, maxCount)
	if err != nil {
		return Limit{}, fmt.Errorf("count: %w", err)
	}
	l := Limit{Count: n, Burst: n}
	switch unit {
	case "s":
		l.Per = time.Second
	case "m":
		l.Per = time.Minute
	case "h":
		l.Per = time.Hour
	default:
		return Limit{}, fmt.Errorf("unit %q: want s, m or h", unit)
	}
	if hasOpts {
		b, ok := strings.CutPrefix(opts, "burst=")
		if !ok {
			return Limit{}, fmt.Errorf("%q: the only option is burst=N", opts)
		}
		if l.Burst, err = boundedInt(b, maxBurst); err != nil {
			return Limit{}, fmt.Errorf("burst: %w", err)
		}
	}
	return l, nil
}

func boundedInt(s string, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > hi || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%q is not an integer from 1 to %d", s, hi)
	}
	return n, nil
}

// Result is a bucket's answer to one request.
type Result struct {
	Allowed    bool
	Remaining  int           // requests the bucket would still allow now
	RetryAfter time.Duration // when refused: until one more is allowed
	ResetAfter time.Duration // until the bucket is full again
}

// RetryAfterSeconds is RetryAfter as a Retry-After header gives it: whole
// seconds, rounded up, at least 1.
func (r Result) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(r.RetryAfter.Seconds())))
}

// Store keeps buckets by key. Allow takes one token from key's bucket of
// limit l if it has one.
type Store interface {
	Allow(ctx context.Context, key string, l Limit) (Result, error)
}

// Limiter applies Limits to callers, through a Store.
type Limiter struct {
	limits   Limits
	store    Store
	fallback *Memory     // when store fails
	onError  func(error) // store failures; may be nil
	keys     [numClasses]string
	pace     *pacer // nil: Wait does not wait
}

// New returns a Limiter of limits over store (nil: a Memory store).
// onError, if not nil, hears of each store failure (the request was then
// counted by the fallback Memory store).
func New(limits Limits, store Store, onError func(error)) *Limiter {
	fb := NewMemory(nil)
	if store == nil {
		store = fb
	}
	l := &Limiter{limits: limits, store: store, fallback: fb, onError: onError}
	for _, c := range Classes() {
		l.keys[c] = c.String() + ":"
	}
	return l
}

// Limit is the limit of class c.
func (l *Limiter) Limit(c Class) Limit {
	if c >= numClasses {
		return Limit{}
	}
	return l.limits[c]
}

// Allow counts one request of class c by caller and answers whether it may
// proceed. A class without a limit always may (ok is false: there is no
// bucket to describe).
func (l *Limiter) Allow(ctx context.Context, c Class, caller string) (res Result, ok bool) {
	lim := l.Limit(c)
	if lim.Off() {
		return Result{Allowed: true}, false
	}
	key := l.keys[c] + caller
	res, err := l.store.Allow(ctx, key, lim)
	if err != nil {
		if l.onError != nil {
			l.onError(err)
		}
		res, _ = l.fallback.Allow(ctx, key, lim)
	}
	return res, true
}
