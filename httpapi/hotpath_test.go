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
	s, tok := benchServer(tb)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := auth.NewSigner(key, "http://127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	s.signer = signer
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
