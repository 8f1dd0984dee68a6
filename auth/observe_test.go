package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// fetchLog records what a key set reported through ObserveFetches.
type fetchLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *fetchLog) observe(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *fetchLog) outcomes() (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		if err == nil {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

func TestRemoteKeySetReportsEveryFetch(t *testing.T) {
	f := newFixture(t, nil)
	var log fetchLog
	f.keys.ObserveFetches(log.observe)

	mustVerify(t, f.v, f.iss.Sign(f.base("alice"))) // first use: one fetch
	if ok, failed := log.outcomes(); ok != 1 || failed != 0 {
		t.Fatalf("after the first fetch: %d ok, %d failed; want 1, 0", ok, failed)
	}

	// During an outage a fetch for an unknown kid fails, and says so.
	f.iss.Outage(true)
	f.clock.Advance(DefaultJWKSCooldown)
	mustRefuse(t, f.v, f.iss.Sign(f.base("bob"), authtest.WithKID(randomKid(t))), idflow.EUNAUTHORIZED)
	if err := f.keys.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded during an outage")
	}
	if ok, failed := log.outcomes(); ok != 1 || failed != 2 {
		t.Fatalf("after two failed fetches: %d ok, %d failed; want 1, 2", ok, failed)
	}
	if n := f.keys.Fetches(); n != 3 {
		t.Fatalf("key set counted %d fetches; the observer saw 3", n)
	}

	f.iss.Outage(false)
	if err := f.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, failed := log.outcomes(); ok != 2 || failed != 2 {
		t.Fatalf("after recovery: %d ok, %d failed; want 2, 2", ok, failed)
	}
}

func TestVerifierReportsCacheLookups(t *testing.T) {
	var mu sync.Mutex
	hits, misses := 0, 0
	f := newFixture(t, func(c *VerifierConfig) {
		c.CacheSize = 0 // the default cache
		c.OnCacheLookup = func(hit bool) {
			mu.Lock()
			defer mu.Unlock()
			if hit {
				hits++
			} else {
				misses++
			}
		}
	})
	tok := f.iss.Sign(f.base("alice").With("exp", f.clock.Now().Add(10*time.Minute).Unix()))
	for range 3 {
		mustVerify(t, f.v, tok)
	}
	mustRefuse(t, f.v, "a.b.c", idflow.EUNAUTHORIZED) // not cached, never verified
	mu.Lock()
	if hits != 2 || misses != 2 {
		t.Fatalf("cache lookups: %d hits, %d misses; want 2 and 2", hits, misses)
	}
	mu.Unlock()

	// Past exp (and leeway) the cached entry no longer answers: a miss,
	// then a refusal that callers can tell apart as an expiry.
	f.clock.Advance(time.Hour)
	_, err := f.v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrTokenExpired) || idflow.ErrorCode(err) != idflow.EUNAUTHORIZED {
		t.Fatalf("expired token: %v; want EUNAUTHORIZED wrapping ErrTokenExpired", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 2 || misses != 3 {
		t.Fatalf("after expiry: %d hits, %d misses; want 2 and 3", hits, misses)
	}
}
