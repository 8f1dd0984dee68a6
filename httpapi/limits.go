package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/ratelimit"
)

// Why a limit refused a request: the reason label of idflow_limits_hit_total.
const (
	LimitRate        = "rate"         // the route class's request rate
	LimitTurns       = "turns"        // agent turns in flight
	LimitStreams     = "streams"      // event streams open
	LimitIngestBytes = "ingest_bytes" // ingest bytes in flight
)

// LimitObserver hears of every request a limit refused: the route class
// (ratelimit.Class names) and the reason (Limit… constants). It never
// hears who.
type LimitObserver func(class, reason string)

// rateClass is a route's rate-limit class (routes.go).
type rateClass = ratelimit.Class

// classOf is the class whose rate limit a route counts against: the
// route's own, else read for GET and write for every other method.
func classOf(rt route) ratelimit.Class {
	switch {
	case rt.rate != 0:
		return rt.rate
	case rt.method == http.MethodGet:
		return ratelimit.Read
	}
	return ratelimit.Write
}

// callerKey is the key of p's buckets and counters: the verified user id,
// or for an app-only token its client id. Never anything the client chose.
func callerKey(p idflow.Principal) string {
	if p.Kind == idflow.KindUser {
		return "u:" + p.UserID
	}
	return "a:" + p.ClientID
}

// peerKey is the key of a request without a Principal: its peer address
// (an IPv6 /64 as one).
func peerKey(r *http.Request) string { return "p:" + peerHost(r) }

// admitRate counts r against its caller's bucket of class c — a request
// over the limit waits its turn when the limiter paces — and answers 429
// when the bucket stays empty. Every answer of a limited class carries
// the IETF RateLimit and RateLimit-Policy headers
// (draft-ietf-httpapi-ratelimit-headers); the answer depends only on the
// caller's own bucket, so it tells nothing of anyone else.
func (s *Server) admitRate(w http.ResponseWriter, r *http.Request, c ratelimit.Class, key string) bool {
	if s.limiter == nil {
		return true
	}
	// A request waiting its turn has not begun to read its body: it gives
	// back its place among its peer's bodies in flight (behind a proxy the
	// peer is everyone) rather than hold it while it waits.
	var giveBack func()
	if b, ok := r.Body.(*guardedBody); ok {
		giveBack = b.release
	}
	res, limited := s.limiter.Wait(r.Context(), c, key, giveBack)
	if !limited {
		return true
	}
	lim := s.limiter.Limit(c)
	h := w.Header()
	name := c.String()
	h["Ratelimit-Policy"] = []string{`"` + name + `";q=` + strconv.Itoa(lim.Burst) + ";w=" + strconv.Itoa(lim.Window())}
	h["Ratelimit"] = []string{`"` + name + `";r=` + strconv.Itoa(res.Remaining) + ";t=" + strconv.Itoa(ceilSeconds(res.ResetAfter))}
	if res.Allowed {
		return true
	}
	s.limitHit(name, LimitRate)
	retry := res.RetryAfterSeconds()
	h.Set("Retry-After", strconv.Itoa(retry))
	writeProblem(w, http.StatusTooManyRequests, idflow.ERATELIMIT,
		fmt.Sprintf("too many %s requests: the limit is %s; retry in %d s", name, describeLimit(lim), retry))
	return false
}

// describeLimit is a Limit in words, for the 429's detail.
func describeLimit(l ratelimit.Limit) string {
	per := map[time.Duration]string{time.Second: "second", time.Minute: "minute", time.Hour: "hour"}[l.Per]
	return fmt.Sprintf("%d per %s, in bursts of up to %d", l.Count, per, l.Burst)
}

func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func (s *Server) limitHit(class, reason string) {
	if s.onLimit != nil {
		s.onLimit(class, reason)
	}
}

// perUser counts something a user has in flight (turns, streams, bytes)
// against a bound.
type perUser struct {
	limit int64
	mu    sync.Mutex
	n     map[string]int64
}

func newPerUser(limit int64) *perUser { return &perUser{limit: limit, n: map[string]int64{}} }

// acquire takes amount for key, or answers false when that would pass the
// limit. A single amount larger than the limit is still let through while
// key has nothing else in flight, so that the limit bounds concurrency
// without refusing a request the body limit allows.
func (c *perUser) acquire(key string, amount int64) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.n[key]; cur > 0 && cur+amount > c.limit {
		return nil, false
	}
	c.n[key] += amount
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n[key] -= amount; c.n[key] <= 0 {
			delete(c.n, key)
		}
	}), true
}

// inFlight reports how much key has in flight.
func (c *perUser) inFlight(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// admitConcurrent takes the places a request of the route needs among its
// user's turns, streams and ingest bytes in flight, answering 429 when one
// is full. release gives them back when the request is done.
func (s *Server) admitConcurrent(w http.ResponseWriter, r *http.Request, rt route, key string) (release func(), ok bool) {
	var releases []func()
	release = func() {
		for _, f := range releases {
			f()
		}
	}
	take := func(c *perUser, amount int64, class, reason, what string) bool {
		rel, ok := c.acquire(key, amount)
		if ok {
			releases = append(releases, rel)
			return true
		}
		release()
		s.limitHit(class, reason)
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusTooManyRequests, idflow.ERATELIMIT, what)
		return false
	}
	switch classOf(rt) {
	case ratelimit.Turn:
		if !take(s.turns, 1, "turn", LimitTurns, fmt.Sprintf("you have %d agent turns in progress, the most at once; retry when one has finished", s.cfg.TurnsPerUser)) {
			return nil, false
		}
		if acceptsEventStream(r) && !take(s.streams, 1, "turn", LimitStreams, fmt.Sprintf("you have %d event streams open, the most at once; close one first", s.cfg.StreamsPerUser)) {
			return nil, false
		}
	case ratelimit.Ingest:
		n := r.ContentLength
		if n <= 0 || n > rt.body {
			n = rt.body // unknown length: it may be as large as the route allows
		}
		if !take(s.ingestBytes, n, "ingest", LimitIngestBytes, fmt.Sprintf("you have ingests of up to %d bytes in progress, the most at once; retry when one has finished", s.cfg.IngestBytesPerUser)) {
			return nil, false
		}
	}
	return release, true
}
