package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/devidp"
)

// recordingConns is a Connections that records what each call could see
// of the caller's inbound token.
type recordingConns struct {
	mu      sync.Mutex
	inbound []string // "" when the context carried none
}

func (c *recordingConns) see(ctx context.Context, p idflow.Principal) {
	tok, _ := idflow.InboundToken(ctx, p)
	c.mu.Lock()
	c.inbound = append(c.inbound, tok)
	c.mu.Unlock()
}

func (c *recordingConns) ListConnections(ctx context.Context, p idflow.Principal) ([]idflow.Connection, error) {
	c.see(ctx, p)
	return []idflow.Connection{}, nil
}

func (c *recordingConns) Connect(ctx context.Context, p idflow.Principal, provider string) (string, error) {
	c.see(ctx, p)
	return "https://provider.example/authorize?state=x", nil
}

func (c *recordingConns) Callback(ctx context.Context, p idflow.Principal, provider string, q url.Values) (idflow.Connection, error) {
	return idflow.Connection{}, idflow.NotFound("connect state")
}

func (c *recordingConns) Disconnect(ctx context.Context, p idflow.Principal, provider string) error {
	return idflow.NotFound("connection")
}

// fakeSessions resolves one session id to alice.
type fakeSessions struct{}

func (fakeSessions) Lookup(ctx context.Context, id string) (idflow.Principal, string, error) {
	if id != "alice-session" {
		return idflow.Principal{}, "", idflow.Errorf(idflow.EUNAUTHORIZED, "no session")
	}
	return authtest.User("dev-alice", "t-one"), "csrf-1", nil
}

// TestInboundTokenOnlyForBearer: a handler's context carries the inbound
// token of a bearer-authenticated request, bound to its user, and nothing
// for a browser session.
func TestInboundTokenOnlyForBearer(t *testing.T) {
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
	conns := &recordingConns{}
	s := New(Config{PublicURL: "http://127.0.0.1", APIAudiences: []string{"idflow"}},
		Deps{Authn: auth.New(auth.Config{Bearer: v, Sessions: fakeSessions{}}), Connections: conns})

	do := func(method, path string, set func(*http.Request)) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		set(req)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	session := func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: "alice-session"})
		r.Header.Set(auth.CSRFHeader, "csrf-1")
	}
	if w := do("GET", "/api/v1/connections", bearer); w.Code != http.StatusOK {
		t.Fatalf("bearer list: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/api/v1/connections/x/connect", session); w.Code != http.StatusOK ||
		!strings.Contains(w.Body.String(), `"authorize_url"`) {
		t.Fatalf("session connect: %d %s", w.Code, w.Body)
	}
	if w := do("GET", "/api/v1/connections/x/callback?state=s&code=c", bearer); w.Code != http.StatusNotFound {
		t.Fatalf("callback: %d", w.Code)
	}
	if w := do("GET", "/api/v1/connections", func(*http.Request) {}); w.Code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", w.Code)
	}
	conns.mu.Lock()
	defer conns.mu.Unlock()
	if len(conns.inbound) != 2 || conns.inbound[0] != tok || conns.inbound[1] != "" {
		t.Fatalf("inbound tokens seen: %d, bearer %v, session %q", len(conns.inbound),
			len(conns.inbound) > 0 && conns.inbound[0] == tok, conns.inbound[len(conns.inbound)-1])
	}

	// The routes are in the OpenAPI document only when connections exist.
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	w := do("GET", "/openapi.json", bearer)
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || doc.Paths["/api/v1/connections/{provider}/callback"] == nil {
		t.Fatalf("openapi: %v", err)
	}
	bare := New(Config{PublicURL: "http://127.0.0.1", APIAudiences: []string{"idflow"}}, Deps{Authn: auth.New(auth.Config{Bearer: v})})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/connections", nil)
	bearer(req)
	bare.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("without providers: %d, want 404 (no such route)", rec.Code)
	}
}
