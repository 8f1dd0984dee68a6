package httpapi

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/devidp"
)

// benchServer is a server whose only credential source is a dev-issuer
// token verified by the real Verifier (cache on, as in production).
func benchServer(b testing.TB) (*Server, string) {
	return benchServerWith(b, Deps{})
}

// benchServerWith is benchServer with d's dependencies (its Authn set here).
func benchServerWith(b testing.TB, d Deps) (*Server, string) {
	b.Helper()
	iss, err := devidp.New(devidp.Config{Issuer: "http://127.0.0.1/dev/idp", Audience: "idflow",
		KeyFile: filepath.Join(b.TempDir(), "k.pem")})
	if err != nil {
		b.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{"http://127.0.0.1/dev/idp"}, Audiences: []string{"idflow"}},
		auth.NewStaticKeySet(iss.PublicJWK()))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := iss.SignToken("alice", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	d.Authn = auth.New(auth.Config{Bearer: v})
	s := New(Config{PublicURL: "http://127.0.0.1", APIAudiences: []string{"idflow"}}, d)
	return s, tok
}

// BenchmarkMe compares GET /api/v1/me (authenticated: bearer verification,
// authorization, the handler) with GET /healthz (no authentication) through
// the same middleware, in one run.
func BenchmarkMe(b *testing.B) {
	s, tok := benchServer(b)
	for _, bc := range []struct {
		name, path, auth string
		want             int
	}{
		{"authenticated_me", "/api/v1/me", "Bearer " + tok, http.StatusOK},
		{"unauthenticated_healthz", "/healthz", "", http.StatusOK},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodGet, bc.path, nil)
					if bc.auth != "" {
						req.Header.Set("Authorization", bc.auth)
					}
					w := httptest.NewRecorder()
					s.ServeHTTP(w, req)
					if w.Code != bc.want {
						b.Fatalf("status %d", w.Code)
					}
				}
			})
		})
	}
}
