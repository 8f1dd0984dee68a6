package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
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
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/files"
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/sqlite"
)

// apiBench is the production stack in one process: SQLite, per-user
// files, the scoped cache, the service, and bearer tokens of an OpenID
// issuer verified by the real Verifier (JWKS fetched over HTTP, verified
// tokens cached), as `idflow serve` wires them.
type apiBench struct {
	s     *Server
	svc   *service.Service
	token string           // alice's bearer token
	p     idflow.Principal // the Principal that token authenticates to
}

func newAPIBench(b *testing.B) *apiBench {
	b.Helper()
	ctx := b.Context()
	dir := b.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "idflow.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	blobs, err := files.New(filepath.Join(dir, "files"))
	if err != nil {
		b.Fatal(err)
	}
	svc := service.New(service.Config{}, service.Deps{Store: db, Blobs: blobs,
		Cache: cache.NewScoped(cache.NewMemory(10000), 5*time.Minute), Model: llm.Echo{}})

	iss := authtest.NewIssuer(b)
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{iss.Issuer()}, Audiences: []string{iss.Audience()}},
		auth.NewRemoteKeySet(iss.JWKSURL(), nil, 0, nil))
	if err != nil {
		b.Fatal(err)
	}
	s := New(Config{PublicURL: "http://127.0.0.1", APIAudiences: []string{iss.Audience()}},
		Deps{Authn: auth.New(auth.Config{Bearer: v}), Store: db, Svc: svc})
	token := iss.Sign(iss.EntraV2User(authtest.EntraUser{ObjectID: "0a11ce00-0000-4000-8000-000000000001", TenantID: "t-one",
		Name: "Alice", Issuer: iss.Issuer(), IDTyp: true}))

	// The real Principal of the token, from the real authentication path
	// (this also warms the verified-token cache).
	req := httptest.NewRequest(http.MethodGet, "/api/v1/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	p, err := s.authn.Authenticate(req, s.cfg.APIAudiences)
	if err != nil {
		b.Fatal(err)
	}
	return &apiBench{s: s, svc: svc, token: token, p: p}
}

// withoutAuthentication is the server's handler with one route served
// exactly as wrap serves it, minus authentication and authorization: the
// Principal is injected. Every other route, the mux and the middleware are
// the same, so the two handlers differ only in authentication.
func (ab *apiBench) withoutAuthentication(b *testing.B, method, pattern string) http.Handler {
	b.Helper()
	s, p := ab.s, ab.p
	mux := http.NewServeMux()
	byPath := map[string]map[string]http.Handler{}
	var order []string
	found := false
	for _, rt := range s.api {
		if byPath[rt.pattern] == nil {
			byPath[rt.pattern] = map[string]http.Handler{}
			order = append(order, rt.pattern)
		}
		h := s.wrap(rt)
		if rt.method == method && rt.pattern == pattern {
			found = true
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
				ctx := idflow.NewContext(r.Context(), p)
				setLogUser(ctx, p.UserID)
				r = r.WithContext(ctx)
				if err := rt.serve(w, r, p); err != nil {
					s.writeError(w, r, err)
				}
			})
		}
		byPath[rt.pattern][rt.method] = h
	}
	if !found {
		b.Fatalf("no route %s %s", method, pattern)
	}
	for _, pattern := range order {
		mux.Handle(pattern, methodDispatch(byPath[pattern]))
	}
	return s.middleware(mux)
}

// BenchmarkListSessions measures GET /api/v1/sessions (alice's 20 sessions)
// with a real bearer token (verified by the real Verifier, its cache warm)
// against the same handler with the Principal injected, in one run:
//
//	go test ./httpapi -run '^$' -bench BenchmarkListSessions -count 6
//
// The authentication overhead is principal_req/s ÷ bearer_req/s - 1; the
// interleaved sub-benchmark reports it directly (auth-overhead-%).
func BenchmarkListSessions(b *testing.B) {
	ab := newAPIBench(b)
	for i := range 20 {
		if _, err := ab.svc.CreateSession(b.Context(), ab.p, service.SessionInput{Title: fmt.Sprint("chat ", i)}); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name  string
		h     http.Handler
		token string
	}{
		{"bearer", ab.s, ab.token},
		{"principal", ab.withoutAuthentication(b, "GET", "/api/v1/sessions"), ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Both sides must answer the same list.
			w := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/sessions", nil)
			if bc.token != "" {
				req.Header.Set("Authorization", "Bearer "+bc.token)
			}
			bc.h.ServeHTTP(w, req)
			var l idflow.List[idflow.ChatSession]
			if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &l) != nil || len(l.Items) != 20 {
				b.Fatalf("status %d, %d sessions: %.200s", w.Code, len(l.Items), w.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodGet, "/api/v1/sessions", nil)
					if bc.token != "" {
						req.Header.Set("Authorization", "Bearer "+bc.token)
					}
					w := httptest.NewRecorder()
					bc.h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
	// Both sides alternating request by request, so that a noisy machine
	// slows them alike; reports the overhead of authentication directly,
	// from the median latency of each side (robust to a preempted request).
	b.Run("interleaved", func(b *testing.B) {
		sides := [2]struct {
			h     http.Handler
			token string
		}{{ab.s, ab.token}, {ab.withoutAuthentication(b, "GET", "/api/v1/sessions"), ""}}
		var mu sync.Mutex
		var lat [2][]time.Duration
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var mine [2][]time.Duration
			for i := 0; pb.Next(); i++ {
				side := i % 2
				req := httptest.NewRequest(http.MethodGet, "/api/v1/sessions", nil)
				if sides[side].token != "" {
					req.Header.Set("Authorization", "Bearer "+sides[side].token)
				}
				w := httptest.NewRecorder()
				start := time.Now()
				sides[side].h.ServeHTTP(w, req)
				mine[side] = append(mine[side], time.Since(start))
				if w.Code != http.StatusOK {
					b.Errorf("status %d: %s", w.Code, w.Body)
					return
				}
			}
			mu.Lock()
			lat[0], lat[1] = append(lat[0], mine[0]...), append(lat[1], mine[1]...)
			mu.Unlock()
		})
		if len(lat[0]) == 0 || len(lat[1]) == 0 {
			return
		}
		bearer, principal := median(lat[0]), median(lat[1])
		b.ReportMetric(float64(bearer.Nanoseconds())/1e3, "bearer-p50-µs")
		b.ReportMetric(float64(principal.Nanoseconds())/1e3, "principal-p50-µs")
		b.ReportMetric(100*(float64(bearer)/float64(principal)-1), "auth-overhead-%")
	})
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// ingestText is n bytes of paragraphs of plain text.
func ingestText(n int) []byte {
	var buf bytes.Buffer
	for i := 0; buf.Len() < n; i++ {
		fmt.Fprintf(&buf, "Paragraph %d of the handbook. The quick brown fox jumps over the lazy dog while the team reviews quarterly figures. ", i)
		if i%4 == 3 {
			buf.WriteString("\n\n")
		}
	}
	return buf.Bytes()[:n]
}

// BenchmarkIngest measures POST /api/v1/etl/ingest of a 1 MiB text
// document, authenticated, through the whole handler (chunking into
// facts, SQLite with its full-text index, the bytes on disk), as MB/s:
//
//	go test ./httpapi -run '^$' -bench BenchmarkIngest -count 6
func BenchmarkIngest(b *testing.B) {
	doc := ingestText(1 << 20)
	jsonBody, err := json.Marshal(map[string]string{"filename": "handbook.txt", "content": string(doc)})
	if err != nil {
		b.Fatal(err)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, err := mw.CreateFormFile("file", "handbook.txt")
	if err != nil {
		b.Fatal(err)
	}
	fw.Write(doc)
	mw.Close()

	for _, bc := range []struct {
		name, contentType string
		body              []byte
	}{
		{"multipart", mw.FormDataContentType(), form.Bytes()},
		{"json", "application/json", jsonBody},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ab := newAPIBench(b) // a fresh store: the other side's documents do not slow this one
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/etl/ingest", bytes.NewReader(bc.body))
				req.Header.Set("Authorization", "Bearer "+ab.token)
				req.Header.Set("Content-Type", bc.contentType)
				w := httptest.NewRecorder()
				ab.s.ServeHTTP(w, req)
				if w.Code != http.StatusCreated {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				if !strings.Contains(w.Body.String(), `"size":1048576`) {
					b.Fatalf("stored %s", w.Body)
				}
			}
		})
	}
}
