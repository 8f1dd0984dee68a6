package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/devidp"
)

// countingMCP answers every /mcp request with 200 and counts them.
type countingMCP struct{ served atomic.Int32 }

func (m *countingMCP) ServeMCP(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	m.served.Add(1)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (m *countingMCP) ServeMetadata(w http.ResponseWriter, r *http.Request) error { return nil }

func (m *countingMCP) Challenge(r *http.Request, err error) string {
	return `Bearer resource_metadata="https://idflow.example/.well-known/oauth-protected-resource/mcp"`
}

// TestMCPOriginCheck: /mcp refuses, with 403 problem+json and before
// authentication, every Origin but the public URL's and the CORS origins —
// DNS-rebinding-style requests with and without a valid token — and lets
// requests without Origin and from allowed origins through to
// authentication.
func TestMCPOriginCheck(t *testing.T) {
	iss, err := devidp.New(devidp.Config{Issuer: "http://127.0.0.1/dev/idp", Audience: "idflow",
		KeyFile: filepath.Join(t.TempDir(), "k.pem")})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{"http://127.0.0.1/dev/idp"}, Audiences: []string{"idflow"}},
		auth.NewStaticKeySet(iss.PublicJWK()))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.SignToken("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := &countingMCP{}
	s := New(Config{PublicURL: "https://idflow.example", APIAudiences: []string{"idflow"},
		CORSOrigins: []string{"http://localhost:6274", "https://app.example.org/"}},
		Deps{Authn: auth.New(auth.Config{Bearer: v}), MCP: m})

	do := func(method, token string, origins ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "https://idflow.example/mcp", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		for _, o := range origins {
			req.Header.Add("Origin", o)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w
	}

	refused := [][]string{
		{"http://evil.example"},
		{"null"},
		{"https://idflow.example:8443"},                    // another port
		{"http://idflow.example"},                          // another scheme
		{"https://idflow.example.evil.example"},            // a suffix
		{"https://evil.example", "https://idflow.example"}, // a repeated header
		{"https://idflow.example/mcp"},                     // not an origin
		{"http://localhost:6275"},
		{"http://127.0.0.1"},
		{""},
		{"idflow.example"},
	}
	for _, origins := range refused {
		for _, method := range []string{"POST", "GET", "DELETE"} {
			for _, token := range []string{tok, ""} {
				before := m.served.Load()
				w := do(method, token, origins...)
				var pd problem
				if w.Code != http.StatusForbidden || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") ||
					json.Unmarshal(w.Body.Bytes(), &pd) != nil || pd.Status != http.StatusForbidden {
					t.Fatalf("%s /mcp with Origin %q (token %v): %d %s %s; want 403 problem+json",
						method, origins, token != "", w.Code, w.Header().Get("Content-Type"), w.Body)
				}
				if m.served.Load() != before {
					t.Fatalf("%s /mcp with Origin %q reached the MCP server", method, origins)
				}
			}
		}
	}

	allowed := [][]string{
		nil,
		{"https://idflow.example"},
		{"https://IDFLOW.example:443"},
		{"http://localhost:6274"},
		{"https://app.example.org"},
	}
	for _, origins := range allowed {
		before := m.served.Load()
		if w := do("POST", tok, origins...); w.Code != http.StatusOK || m.served.Load() != before+1 {
			t.Fatalf("POST /mcp with Origin %q and a token: %d %s; want it served", origins, w.Code, w.Body)
		}
		// An allowed Origin is no credential.
		if w := do("POST", "", origins...); w.Code != http.StatusUnauthorized || m.served.Load() != before+1 {
			t.Fatalf("POST /mcp with Origin %q without a token: %d; want 401", origins, w.Code)
		}
	}
}

func TestMCPCanonicalOrigin(t *testing.T) {
	for _, c := range []struct {
		in     string
		strict bool
		want   string
		ok     bool
	}{
		{"https://idflow.example", true, "https://idflow.example", true},
		{"HTTPS://IDFLOW.Example:443", true, "https://idflow.example", true},
		{"http://127.0.0.1:80", true, "http://127.0.0.1", true},
		{"http://127.0.0.1:8080", true, "http://127.0.0.1:8080", true},
		{"http://[::1]:8080", true, "http://[::1]:8080", true},
		{"http://[::1]", true, "http://[::1]", true},
		{"https://idflow.example/base/", false, "https://idflow.example", true},
		{"https://idflow.example/base/", true, "", false},
		{"https://idflow.example?", true, "", false},
		{"https://user@idflow.example", true, "", false},
		{"null", true, "", false},
		{"file:///etc/passwd", true, "", false},
		{"chrome-extension://abc", true, "", false},
		{"", true, "", false},
	} {
		got, ok := canonicalOrigin(c.in, c.strict)
		if got != c.want || ok != c.ok {
			t.Errorf("canonicalOrigin(%q, %v) = %q, %v; want %q, %v", c.in, c.strict, got, ok, c.want, c.ok)
		}
	}
}
