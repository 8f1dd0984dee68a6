package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idflow/idflow/auth"
)

// hotPathServer is benchServer with what /auth/validate and the access log
// need: an assertion signer, and a logger that formats every line (into
// io.Discard) as serve's does.
func hotPathServer(tb testing.TB) (*Server, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := auth.NewSigner(key, "http://127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	s, tok := benchServerWith(tb, Deps{Signer: signer})
	s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return s, tok
}

// discardWriter is a ResponseWriter that keeps the status and headers only,
// reused across requests so that it allocates nothing itself.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) reset()                      { clear(w.h); w.status = 0 }

// BenchmarkHotPath is the in-process share of the requests bench/http.sh
// sends over HTTP, access log included, for -benchmem and alloc profiles:
//
//	go test ./httpapi -run '^$' -bench BenchmarkHotPath -benchmem
func BenchmarkHotPath(b *testing.B) {
	s, tok := hotPathServer(b)
	for _, bc := range []struct{ name, path, auth string }{
		{"healthz", "/healthz", ""},
		{"me", "/api/v1/me", "Bearer " + tok},
		{"validate", "/auth/validate", "Bearer " + tok},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, bc.path, nil)
			if bc.auth != "" {
				req.Header.Set("Authorization", bc.auth)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				s.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

// A guard against gross regressions on the authenticated hot path, not a
// benchmark: allocations per request are exact and do not depend on the
// machine's load. Measured (docs/BENCHMARKS.md, "Hot path"): healthz 15,
// /api/v1/me 18, /auth/validate 16 with its assertion cached (36 before the
// hot-path work). A bound of twice that fails only when something adds
// work per request on the scale of what was removed.
func TestHotPathAllocations(t *testing.T) {
	s, tok := hotPathServer(t)
	for _, tc := range []struct {
		name, path, auth string
		max              float64
	}{
		{"healthz", "/healthz", "", 30},
		{"me", "/api/v1/me", "Bearer " + tok, 36},
		{"validate", "/auth/validate", "Bearer " + tok, 32},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		w := &discardWriter{h: http.Header{}}
		serve := func() {
			w.reset()
			s.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				t.Fatalf("%s: status %d", tc.name, w.status)
			}
		}
		serve() // warm: the verified-token and assertion caches
		if got := testing.AllocsPerRun(200, serve); got > tc.max {
			t.Errorf("%s: %.0f allocations per request, more than the guard's %.0f (twice the measured figure)", tc.name, got, tc.max)
		}
	}
	// The same request without its token is refused: the guard measures
	// the authenticated path, not a shortcut around it.
	req := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
	w := &discardWriter{h: http.Header{}}
	s.ServeHTTP(w, req)
	if w.status != http.StatusUnauthorized {
		t.Fatalf("/auth/validate without a token: %d", w.status)
	}
}
