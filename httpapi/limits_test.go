package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/files"
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/ratelimit"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/sqlite"
)

// limitsFixture is the real stack (SQLite, files, the service, dev-issuer
// tokens verified by the real Verifier) with rate limits on an injected
// clock, and the limits hit as the metric hears them.
type limitsFixture struct {
	s      *Server
	svc    *service.Service
	tokens map[string]string // login → bearer token
	p      map[string]idflow.Principal
	clock  *fakeClock
	mu     sync.Mutex
	hits   []string // "class/reason"
}

func newLimitsFixture(t testing.TB, limits ratelimit.Limits, cfg Config, model idflow.ChatModel) *limitsFixture {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := files.New(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	if model == nil {
		model = llm.Echo{}
	}
	svc := service.New(service.Config{}, service.Deps{Store: db, Blobs: blobs,
		Cache: cache.NewScoped(cache.NewMemory(1000), time.Minute), Model: model})
	iss, err := devidp.New(devidp.Config{Issuer: "http://127.0.0.1/dev/idp", Audience: "idflow", KeyFile: filepath.Join(dir, "k.pem")})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{"http://127.0.0.1/dev/idp"}, Audiences: []string{"idflow"}},
		auth.NewStaticKeySet(iss.PublicJWK()))
	if err != nil {
		t.Fatal(err)
	}
	f := &limitsFixture{svc: svc, tokens: map[string]string{}, p: map[string]idflow.Principal{},
		clock: &fakeClock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}}
	cfg.PublicURL, cfg.APIAudiences = "http://127.0.0.1", []string{"idflow"}
	f.s = New(cfg, Deps{Authn: auth.New(auth.Config{Bearer: v}), Store: db, Svc: svc,
		Limiter: ratelimit.New(limits, ratelimit.NewMemory(f.clock.Now), nil),
		OnLimit: func(class, reason string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.hits = append(f.hits, class+"/"+reason)
		}})
	for _, login := range []string{"alice", "bob"} {
		tok, err := iss.SignToken(login, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[login] = tok
		req := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if f.p[login], err = f.s.authn.Authenticate(req, f.s.cfg.APIAudiences); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *limitsFixture) do(who, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = "192.0.2.1:4242" // every caller behind one address: limits are per user, not per peer
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[who])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.s.ServeHTTP(w, req)
	return w
}

func (f *limitsFixture) hitLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.hits...)
}

// TestRateLimitPerUser: alice spends her read burst and is refused 429
// problem+json with Retry-After and the RateLimit headers; bob, behind the
// same address, is unaffected; her writes have a bucket of their own; on
// the injected clock her reads come back at the configured rate.
func TestRateLimitPerUser(t *testing.T) {
	limits := ratelimit.Limits{}
	limits[ratelimit.Read] = ratelimit.Limit{Count: 1, Per: time.Second, Burst: 3}
	limits[ratelimit.Write] = ratelimit.Limit{Count: 1, Per: time.Minute, Burst: 1}
	f := newLimitsFixture(t, limits, Config{}, nil)

	for i := range 3 {
		w := f.do("alice", "GET", "/api/v1/sessions", "")
		if w.Code != http.StatusOK {
			t.Fatalf("alice's read %d: %d %s", i+1, w.Code, w.Body)
		}
		if got, want := w.Header().Get("RateLimit"), `"read";r=`+string(rune('2'-i))+";t="; !strings.HasPrefix(got, want) {
			t.Fatalf("alice's read %d: RateLimit %q, want %q…", i+1, got, want)
		}
		if got := w.Header().Get("RateLimit-Policy"); got != `"read";q=3;w=3` {
			t.Fatalf("RateLimit-Policy %q", got)
		}
	}
	w := f.do("alice", "GET", "/api/v1/sessions", "")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != "application/problem+json" ||
		w.Header().Get("Retry-After") != "1" || !strings.HasPrefix(w.Header().Get("RateLimit"), `"read";r=0;t=`) ||
		!strings.Contains(w.Body.String(), `"type":"urn:idflow:problem:rate_limited"`) ||
		!strings.Contains(w.Body.String(), "too many read requests: the limit is 1 per second, in bursts of up to 3") {
		t.Fatalf("alice's fourth read: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w := f.do("bob", "GET", "/api/v1/sessions", ""); w.Code != http.StatusOK {
		t.Fatalf("bob while alice is throttled: %d %s", w.Code, w.Body)
	}
	if w := f.do("alice", "POST", "/api/v1/apps", `{"name":"x"}`); w.Code != http.StatusCreated {
		t.Fatalf("alice's write while her reads are throttled: %d %s", w.Code, w.Body)
	}
	if w := f.do("alice", "POST", "/api/v1/apps", `{"name":"y"}`); w.Code != http.StatusTooManyRequests {
		t.Fatalf("alice's second write: %d %s", w.Code, w.Body)
	}
	// Not limited: health checks.
	for range 10 {
		if w := f.do("", "GET", "/healthz", ""); w.Code != http.StatusOK || w.Header().Get("RateLimit") != "" {
			t.Fatalf("healthz: %d %v", w.Code, w.Header())
		}
	}
	f.clock.Add(999 * time.Millisecond)
	if w := f.do("alice", "GET", "/api/v1/sessions", ""); w.Code != http.StatusTooManyRequests {
		t.Fatalf("alice before her token is back: %d", w.Code)
	}
	f.clock.Add(time.Millisecond)
	if w := f.do("alice", "GET", "/api/v1/sessions", ""); w.Code != http.StatusOK {
		t.Fatalf("alice once her token is back: %d %s", w.Code, w.Body)
	}
	if got := strings.Join(f.hitLog(), ","); got != "read/rate,write/rate,read/rate" {
		t.Fatalf("limits hit: %s", got)
	}
}

// TestOverLimitRequestWaitsItsTurn: with pacing, alice's read past her
// burst waits for her next token (on the injected clock: her wait moves
// it) and is answered 200; a write whose next token is further off than
// the wait waits the whole wait and is refused, 429 with the time still to
// go; bob's requests never wait.
func TestOverLimitRequestWaitsItsTurn(t *testing.T) {
	limits := ratelimit.Limits{}
	limits[ratelimit.Read] = ratelimit.Limit{Count: 10, Per: time.Second, Burst: 2}
	limits[ratelimit.Write] = ratelimit.Limit{Count: 1, Per: time.Minute, Burst: 1}
	f := newLimitsFixture(t, limits, Config{}, nil)
	var waits []time.Duration
	f.s.limiter = ratelimit.New(limits, ratelimit.NewMemory(f.clock.Now), nil).Pace(time.Second, func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		f.clock.Add(d)
		return nil
	})
	for i := range 3 {
		if w := f.do("alice", "GET", "/api/v1/sessions", ""); w.Code != http.StatusOK {
			t.Fatalf("alice's read %d: %d %s", i+1, w.Code, w.Body)
		}
	}
	if !slices.Equal(waits, []time.Duration{100 * time.Millisecond}) {
		t.Fatalf("alice's third read waited %v; want 100ms (her next token at 10/s)", waits)
	}
	if w := f.do("bob", "GET", "/api/v1/sessions", ""); w.Code != http.StatusOK || len(waits) != 1 {
		t.Fatalf("bob's read: %d, waits %v", w.Code, waits)
	}
	if w := f.do("alice", "POST", "/api/v1/apps", `{"name":"x"}`); w.Code != http.StatusCreated {
		t.Fatalf("alice's first write: %d %s", w.Code, w.Body)
	}
	if w := f.do("alice", "POST", "/api/v1/apps", `{"name":"y"}`); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "59" ||
		!slices.Equal(waits, []time.Duration{100 * time.Millisecond, time.Second}) {
		t.Fatalf("alice's second write (next token in a minute): %d Retry-After %q, waits %v; want 429 after waiting 1s, 59s to go", w.Code, w.Header().Get("Retry-After"), waits)
	}
	if got := strings.Join(f.hitLog(), ","); got != "write/rate" {
		t.Fatalf("limits hit: %s; a request that waited its turn is not one", got)
	}
}

// TestWaitingRequestHoldsNoBodyPlace: behind one address (a proxy) with
// room for one request body in flight, alice's write that waits its turn
// gives its place back while it waits: bob's write, sent meanwhile, is
// admitted, and alice's is then served too.
func TestWaitingRequestHoldsNoBodyPlace(t *testing.T) {
	limits := ratelimit.Limits{}
	limits[ratelimit.Write] = ratelimit.Limit{Count: 10, Per: time.Second, Burst: 1}
	f := newLimitsFixture(t, limits, Config{MaxBodiesPerPeer: 1}, nil)
	bobWhileAliceWaits := 0
	f.s.limiter = ratelimit.New(limits, ratelimit.NewMemory(f.clock.Now), nil).Pace(time.Second, func(_ context.Context, d time.Duration) error {
		bobWhileAliceWaits = f.do("bob", "POST", "/api/v1/apps", `{"name":"bob's"}`).Code
		f.clock.Add(d)
		return nil
	})
	if w := f.do("alice", "POST", "/api/v1/apps", `{"name":"first"}`); w.Code != http.StatusCreated {
		t.Fatalf("alice's first write: %d %s", w.Code, w.Body)
	}
	if w := f.do("alice", "POST", "/api/v1/apps", `{"name":"second"}`); w.Code != http.StatusCreated {
		t.Fatalf("alice's second write, after waiting its turn: %d %s", w.Code, w.Body)
	}
	if bobWhileAliceWaits != http.StatusCreated {
		t.Fatalf("bob's write while alice's waited: %d; want 201 (her waiting request holds no body place)", bobWhileAliceWaits)
	}
}

// TestRateLimit429RevealsNothing: once alice is throttled, her request for
// bob's session, for a session that does not exist, and for bob's facts by
// his user id answer the same 429, byte for byte: the limit runs before
// any lookup, on her own bucket only. Before she is throttled the first two
// answer the same 404 (the usual rule).
func TestRateLimit429RevealsNothing(t *testing.T) {
	limits := ratelimit.Limits{}
	limits[ratelimit.Read] = ratelimit.Limit{Count: 1, Per: time.Hour, Burst: 2}
	f := newLimitsFixture(t, limits, Config{}, nil)
	bobs, err := f.svc.CreateSession(context.Background(), f.p["bob"], service.SessionInput{Title: "bob's"})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/api/v1/sessions/" + bobs.ID, "/api/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAAAA"}
	a, b := f.do("alice", "GET", paths[0], ""), f.do("alice", "GET", paths[1], "")
	if a.Code != http.StatusNotFound || a.Body.String() != b.Body.String() {
		t.Fatalf("before the limit: %d %s / %d %s", a.Code, a.Body, b.Code, b.Body)
	}
	var bodies []string
	for _, p := range append(paths, "/api/v1/users/"+f.p["bob"].UserID+"/facts", "/api/v1/users/dev-nobody/facts") {
		w := f.do("alice", "GET", p, "")
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("%s: %d %s", p, w.Code, w.Body)
		}
		bodies = append(bodies, w.Body.String()+w.Header().Get("Retry-After")+w.Header().Get("RateLimit-Policy"))
	}
	for i := range bodies {
		if bodies[i] != bodies[0] {
			t.Fatalf("429 answers differ:\n%s\n%s", bodies[0], bodies[i])
		}
	}
	if w := f.do("bob", "GET", paths[0], ""); w.Code != http.StatusOK {
		t.Fatalf("bob's own session: %d", w.Code)
	}
}

// TestRateLimitAnonymousByPeer: requests without credentials, or with a
// forged token, count against their peer address; a user behind the same
// address keeps their own bucket, and a client-chosen header (X-Forwarded-For,
// a user id) changes nothing.
func TestRateLimitAnonymousByPeer(t *testing.T) {
	limits := ratelimit.Limits{}
	limits[ratelimit.Read] = ratelimit.Limit{Count: 1, Per: time.Hour, Burst: 2}
	f := newLimitsFixture(t, limits, Config{}, nil)
	codes := []int{}
	for _, tok := range []string{"", "forged.token.here", "", ""} {
		hdr := []string{"X-Forwarded-For", "198.51.100." + string(rune('1'+len(codes))), "X-User-Id", "dev-bob"}
		if tok != "" {
			hdr = append(hdr, "Authorization", "Bearer "+tok)
		}
		codes = append(codes, f.do("", "GET", "/api/v1/sessions", "", hdr...).Code)
	}
	if codes[0] != 401 || codes[1] != 401 || codes[2] != 429 || codes[3] != 429 {
		t.Fatalf("anonymous from one peer: %v", codes)
	}
	if w := f.do("alice", "GET", "/api/v1/sessions", ""); w.Code != http.StatusOK {
		t.Fatalf("alice behind the same peer: %d", w.Code)
	}
}

// TestTurnsInFlightPerUser: alice's turns beyond TurnsPerUser are refused
// while her others are in progress; bob's turn proceeds meanwhile; when
// hers end, her next proceeds.
func TestTurnsInFlightPerUser(t *testing.T) {
	model := &gatedModel{entered: make(chan struct{}, 10), release: make(chan struct{})}
	f := newLimitsFixture(t, ratelimit.Limits{}, Config{TurnsPerUser: 2}, model)
	session := func(who string) string {
		s, err := f.svc.CreateSession(context.Background(), f.p[who], service.SessionInput{Title: "t"})
		if err != nil {
			t.Fatal(err)
		}
		return "/api/v1/sessions/" + s.ID + "/messages"
	}
	alice, bob := session("alice"), session("bob")
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for range 2 {
		wg.Go(func() { codes <- f.do("alice", "POST", alice, `{"content":"hi"}`).Code })
	}
	waitEntered(t, model, 2)
	w := f.do("alice", "POST", alice, `{"content":"third"}`)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "2 agent turns in progress") || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("alice's third turn: %d %s", w.Code, w.Body)
	}
	wg.Go(func() { codes <- f.do("bob", "POST", bob, `{"content":"hi"}`).Code })
	waitEntered(t, model, 1)
	close(model.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusCreated {
			t.Fatalf("a turn let in answered %d", c)
		}
	}
	if w := f.do("alice", "POST", alice, `{"content":"again"}`); w.Code != http.StatusCreated {
		t.Fatalf("alice once her turns ended: %d %s", w.Code, w.Body)
	}
	if got := strings.Join(f.hitLog(), ","); got != "turn/turns" {
		t.Fatalf("limits hit: %s", got)
	}
}

// gatedModel answers once release is closed, and says when a call began.
type gatedModel struct {
	entered chan struct{}
	release chan struct{}
}

func (m *gatedModel) Chat(ctx context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	m.entered <- struct{}{}
	select {
	case <-m.release:
	case <-ctx.Done():
		return idflow.ChatResponse{}, ctx.Err()
	}
	return idflow.ChatResponse{Model: req.Model, Content: "ok"}, nil
}

func waitEntered(t *testing.T, m *gatedModel, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case <-m.entered:
		case <-deadline:
			t.Fatalf("model calls did not begin within 10 s")
		}
	}
}

// TestIngestBytesInFlightPerUser: while alice's ingests hold
// IngestBytesPerUser, her next is refused before its body is read; bob's
// proceeds; one ingest larger than the whole allowance proceeds alone.
func TestIngestBytesInFlightPerUser(t *testing.T) {
	f := newLimitsFixture(t, ratelimit.Limits{}, Config{IngestBytesPerUser: 1000}, nil)
	key := callerKey(f.p["alice"])
	rel, ok := f.s.ingestBytes.acquire(key, 900) // an ingest of hers in progress
	if !ok {
		t.Fatal("first acquire refused")
	}
	body := `{"filename":"a.txt","content":"` + strings.Repeat("word ", 40) + `"}`
	w := f.do("alice", "POST", "/api/v1/etl/ingest", body)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "ingests of up to 1000 bytes in progress") {
		t.Fatalf("alice's ingest over her bytes in flight: %d %s", w.Code, w.Body)
	}
	if w := f.do("bob", "POST", "/api/v1/etl/ingest", body); w.Code != http.StatusCreated {
		t.Fatalf("bob's ingest: %d %s", w.Code, w.Body)
	}
	rel()
	big := `{"filename":"b.txt","content":"` + strings.Repeat("word ", 400) + `"}`
	if w := f.do("alice", "POST", "/api/v1/etl/ingest", big); w.Code != http.StatusCreated {
		t.Fatalf("alice's one ingest larger than her allowance, alone: %d %s", w.Code, w.Body)
	}
	if n := f.s.ingestBytes.inFlight(key); n != 0 {
		t.Fatalf("%d bytes still counted in flight", n)
	}
}

// TestRouteRateClasses: every route counts against a class — its own or
// its method's — and the heavy ones against their own.
func TestRouteRateClasses(t *testing.T) {
	want := map[string]ratelimit.Class{
		"GET /healthz": ratelimit.None, "GET /readyz": ratelimit.None, "GET /metrics": ratelimit.None,
		"POST /api/v1/sessions/{session_id}/messages": ratelimit.Turn,
		"POST /api/v1/etl/ingest":                     ratelimit.Ingest,
		"POST /mcp":                                   ratelimit.MCP,
		"GET /ws/execution/{run_id}":                  ratelimit.WS,
		"GET /api/v1/sessions":                        ratelimit.Read,
		"DELETE /api/v1/apps/{app_id}":                ratelimit.Write,
	}
	for _, rt := range New(Config{}, Deps{}).api {
		c := classOf(rt)
		if c.String() == "invalid" {
			t.Errorf("%s %s: no rate class", rt.method, rt.pattern)
		}
		if w, ok := want[rt.method+" "+rt.pattern]; ok && c != w {
			t.Errorf("%s %s: class %s, want %s", rt.method, rt.pattern, c, w)
		}
		delete(want, rt.method+" "+rt.pattern)
	}
	if len(want) != 0 {
		t.Errorf("routes not found: %v", want)
	}
}
