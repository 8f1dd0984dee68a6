package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idflow/idflow/ratelimit"
	"github.com/idflow/idflow/service"
)

// BenchmarkRateLimitOverhead measures what the in-memory rate limiter adds
// to an authenticated request (GET /api/v1/me through the whole server,
// access log included), side by side with the same server without one,
// alternating request by request so that a noisy machine slows both alike:
//
//	go test ./httpapi -run '^$' -bench BenchmarkRateLimitOverhead -count 6
//
// limiter-ns is the difference of the median latencies.
func BenchmarkRateLimitOverhead(b *testing.B) {
	plain, plainTok := hotPathServer(b)
	limited, limitedTok := hotPathServer(b)
	limited.limiter = ratelimit.New(func() ratelimit.Limits {
		l := ratelimit.Defaults()
		l[ratelimit.Read] = ratelimit.Limit{Count: 1_000_000, Per: time.Second, Burst: 1_000_000} // never refuses here
		return l
	}(), nil, nil)
	sides := []struct {
		s   *Server
		req *http.Request
	}{{plain, nil}, {limited, nil}}
	for i, tok := range []string{plainTok, limitedTok} {
		sides[i].req = httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
		sides[i].req.Header.Set("Authorization", "Bearer "+tok)
	}
	w := &discardWriter{h: http.Header{}}
	for _, sd := range sides { // warm the token caches
		w.reset()
		sd.s.ServeHTTP(w, sd.req)
	}
	if w.h.Get("RateLimit") == "" {
		b.Fatal("the limited server sent no RateLimit header")
	}
	var lat [2][]time.Duration
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sd := sides[i%2]
		w.reset()
		start := time.Now()
		sd.s.ServeHTTP(w, sd.req)
		lat[i%2] = append(lat[i%2], time.Since(start))
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
	if len(lat[0]) == 0 || len(lat[1]) == 0 {
		return
	}
	without, with := median(lat[0]), median(lat[1])
	b.ReportMetric(float64(without.Nanoseconds()), "plain-p50-ns")
	b.ReportMetric(float64(with.Nanoseconds()), "limited-p50-ns")
	b.ReportMetric(float64(with.Nanoseconds()-without.Nanoseconds()), "limiter-ns")
}

// BenchmarkFloodIsolation measures bob's latency (GET /api/v1/sessions,
// his 20 sessions, over loopback HTTP) while alice floods the same server,
// against his latency without her flood, in one run: bob sends a request
// every 10 ms (under his limit) for 20 s, and alice's flood is on and off
// in turns of half a second, so that both halves of bob's 2,000 samples
// see the same machine. Alice's floods, from 8 connections (the client is
// in the same process, on the same 2 cores): her reads of bob's route as
// fast as the server answers them (closed loop), with the default limits
// as served (a request over its limit waits up to IDFLOW_RATE_LIMIT_WAIT's
// default for its turn) and with every such request refused at once
// (nowait); at 1,000/s (ten times her limit); ingests of 32 KB documents
// at 200/s (her limit is 60 a minute), with the default limits (also over
// 60 s, past the burst of 20 her limit admits at once) and without any.
// A flood at a rate arrives as a Poisson process. References: a control
// with no flood (the noise of the ratio), and alice reading, and
// ingesting, at her limit:
//
//	go test ./httpapi -run '^$' -bench BenchmarkFloodIsolation -benchtime 1x -count 3
//
// p99-ratio is bob's p99 with the flood over his p99 without it.
func BenchmarkFloodIsolation(b *testing.B) {
	for _, run := range []flood{
		{name: "control"},
		{name: "reads-at-limit", limits: true, wait: time.Second, rate: 100},
		{name: "reads-closedloop-limits", limits: true, wait: time.Second, rate: 0},
		{name: "reads-closedloop-limits-nowait", limits: true, rate: 0},
		{name: "reads-1000rps-limits", limits: true, wait: time.Second, rate: 1000},
		{name: "ingest-limits", limits: true, wait: time.Second, ingest: true, rate: 200},
		{name: "ingest-limits-60s", limits: true, wait: time.Second, ingest: true, rate: 200, seconds: 60},
		{name: "ingest-at-limit", limits: true, wait: time.Second, ingest: true, rate: 1},
		{name: "ingest-nolimits", ingest: true, rate: 200},
	} {
		b.Run(run.name, func(b *testing.B) {
			for b.Loop() {
				off, on := floodRun(b, run)
				b.ReportMetric(float64(off.Microseconds()), "bob-p99-off-µs")
				b.ReportMetric(float64(on.Microseconds()), "bob-p99-on-µs")
				b.ReportMetric(float64(on)/float64(off), "p99-ratio")
			}
		})
	}
}

// flood is one of alice's floods: ingests or reads of bob's route, rate a
// second (0: as fast as answered), on a server with the default limits (a
// request over a limit waiting up to wait for its turn) or none. The
// control floods nothing: the ratio of bob's two halves is then the
// measurement's own noise; reads-at-limit is alice reading at exactly her
// limit, never over it: what her limit lets her cost bob.
type flood struct {
	name   string
	limits bool
	wait   time.Duration
	ingest bool
	rate   int
	// seconds bob samples for (default 20); a longer run shows a sustained
	// flood past the burst her limit admits at its start.
	seconds int
}

// floodRun answers bob's p99 without and with alice's flood.
func floodRun(b *testing.B, fl flood) (off, on time.Duration) {
	limits, wait, ingest, rate := fl.limits, fl.wait, fl.ingest, fl.rate
	f := newLimitsFixture(b, ratelimit.Limits{}, Config{}, nil)
	f.s.limiter = nil
	defaults := ratelimit.Defaults()
	if limits { // on the real clock
		f.s.limiter = ratelimit.New(defaults, nil, nil).Pace(wait, nil)
	}
	for _, who := range []string{"alice", "bob"} {
		for i := range 20 {
			if _, err := f.svc.CreateSession(context.Background(), f.p[who], service.SessionInput{Title: fmt.Sprint("chat ", i)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	srv := httptest.NewServer(f.s)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	doc, _ := json.Marshal(map[string]string{"filename": "flood.txt", "content": string(ingestText(32 << 10))})
	get := func(who string) (int, time.Duration) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/sessions", nil)
		if who == "alice" && ingest {
			req, _ = http.NewRequest(http.MethodPost, srv.URL+"/api/v1/etl/ingest", bytes.NewReader(doc))
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Authorization", "Bearer "+f.tokens[who])
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var sink bytes.Buffer
		sink.ReadFrom(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	for range 50 { // warm the connections and caches
		get("bob")
	}
	// The flood's gate: closed while alice floods. Off, her connections
	// wait on it and cost nothing, so the half without the flood is not
	// loaded by idle polling.
	var gateMu sync.Mutex
	gate := make(chan struct{})
	flooding := false
	setFlood := func(on bool) {
		gateMu.Lock()
		defer gateMu.Unlock()
		switch {
		case on && !flooding:
			close(gate)
		case !on && flooding:
			gate = make(chan struct{})
		}
		flooding = on
	}
	floodGate := func() (<-chan struct{}, func() bool) {
		gateMu.Lock()
		defer gateMu.Unlock()
		return gate, func() bool { gateMu.Lock(); defer gateMu.Unlock(); return flooding }
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refused, served atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				open, on := floodGate()
				select {
				case <-stop:
					return
				case <-open:
				}
				if rate > 0 {
					// Poisson arrivals: a fixed period would fall in step
					// with bob's 10 ms and hit every one of his requests.
					t := time.NewTimer(time.Duration(rand.ExpFloat64() * float64(time.Second) * 8 / float64(rate)))
					select {
					case <-stop:
						t.Stop()
						return
					case <-t.C:
					}
				}
				if !on() {
					continue
				}
				if code, _ := get("alice"); code == http.StatusTooManyRequests {
					refused.Add(1)
				} else {
					served.Add(1)
				}
			}
		})
	}
	var lat [2][]time.Duration // without, with the flood
	began := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	samples := 100 * fl.seconds
	if samples == 0 {
		samples = 2000
	}
	for i := range samples {
		on := i/50%2 == 1
		setFlood(on && fl.name != "control")
		<-tick.C
		code, d := get("bob")
		if code != http.StatusOK {
			b.Fatalf("bob: %d", code)
		}
		if on {
			lat[1] = append(lat[1], d)
		} else {
			lat[0] = append(lat[0], d)
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	class := ratelimit.Read
	if ingest {
		class = ratelimit.Ingest
	}
	// Whether refused or made to wait, alice is served no more than her
	// limit allows over the run.
	lim := defaults[class]
	if allowed := int64(lim.Burst) + int64(float64(lim.Count)*time.Since(began).Seconds()/lim.Per.Seconds()); limits && served.Load() > allowed {
		b.Fatalf("alice was served %d requests; her %s limit allows %d in the run", served.Load(), class, allowed)
	}
	off, on = p99(lat[0]), p99(lat[1])
	b.Logf("%s: alice served %d, refused %d; bob p99 without the flood %s, with it %s", fl.name, served.Load(), refused.Load(), off, on)
	return off, on
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// BenchmarkIngestFloodMemory: one user sends 20 ingests of 10 MB at once
// (each from its own address, so that only the per-user bound applies);
// reports the peak resident set size above the start, and how many were
// refused, with IngestBytesPerUser at its default (32 MiB) and with no
// bound:
//
//	go test ./httpapi -run '^$' -bench BenchmarkIngestFloodMemory -benchtime 1x -count 3 -timeout 30m
func BenchmarkIngestFloodMemory(b *testing.B) {
	for _, bc := range []struct {
		name  string
		bytes int64
	}{{"bounded", 0}, {"unbounded", 1 << 40}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				peak, refused := ingestFlood(b, bc.bytes)
				b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
				b.ReportMetric(float64(refused), "refused")
			}
		})
	}
}

// ingestFlood sends 20 concurrent 10 MB JSON ingests as alice and answers
// the peak RSS growth seen while they ran, and how many were refused.
func ingestFlood(tb testing.TB, ingestBytes int64) (peak int64, refused int) {
	f := newLimitsFixture(tb, ratelimit.Limits{}, Config{IngestBytesPerUser: ingestBytes, MaxBodiesPerPeer: 64}, nil)
	doc := ingestText(10_000_000)
	body, err := json.Marshal(map[string]string{"filename": "big.txt", "content": string(doc)})
	if err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	base := rss(tb)
	stop := make(chan struct{})
	var max atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rss(tb) - base; r > max.Load() {
				max.Store(r)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 20 {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/etl/ingest", bytes.NewReader(body))
			req.RemoteAddr = "192.0.2." + strconv.Itoa(i+1) + ":1000"
			req.Header.Set("Authorization", "Bearer "+f.tokens["alice"])
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			f.s.ServeHTTP(w, req)
			mu.Lock()
			codes[w.Code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	if codes[http.StatusCreated]+codes[http.StatusTooManyRequests] != 20 {
		tb.Fatalf("answers %v", codes)
	}
	return max.Load(), codes[http.StatusTooManyRequests]
}

// rss is the process's resident set size in bytes (Linux).
func rss(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Skipf("no /proc/self/statm: %v", err)
	}
	fields := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestIngestFloodMemoryBounded: 20 concurrent 10 MB ingests of one user
// under the default IngestBytesPerUser: at most 3 proceed at once (the
// rest are refused 429 before their bodies are read), and the process's
// RSS grows by well under what 20 held bodies would take (200 MB for the
// bodies alone, several times that decoded).
func TestIngestFloodMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("ingests 30 MB")
	}
	peak, refused := ingestFlood(t, 0)
	t.Logf("peak RSS growth %d MiB, %d of 20 refused", peak>>20, refused)
	if refused < 17 {
		t.Fatalf("%d of 20 refused; the 32 MiB bound admits at most 3 of 10 MB", refused)
	}
	if peak > 400<<20 {
		t.Fatalf("RSS grew by %d MiB with at most 3 ingests of 10 MB in flight", peak>>20)
	}
}
