package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// fakeLifecycle disables users and gives directory groups by (tenant, user).
type fakeLifecycle struct {
	mu       sync.Mutex
	disabled map[idflow.UserRef]bool
	groups   map[idflow.UserRef][]string
}

func (f *fakeLifecycle) Disabled(tenant, user string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.disabled[idflow.UserRef{TenantID: tenant, UserID: user}]
}

func (f *fakeLifecycle) DirectoryGroups(_ context.Context, p idflow.Principal) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.groups[idflow.UserRef{TenantID: p.TenantID, UserID: p.UserID}]
}

func (f *fakeLifecycle) set(ref idflow.UserRef, disabled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disabled[ref] = disabled
}

// TestAdmitRefusesDisabled: every way a request's Principal is built — a
// bearer token (verified, then from the cache), a WebSocket or MCP token,
// a browser session cookie, a trusted proxy's headers — refuses a disabled
// user with 403 (ErrUserDisabled), and only that user of that tenant;
// re-enabled, the same credentials work again. Directory groups join the
// token's.
func TestAdmitRefusesDisabled(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, err := NewVerifier(VerifierConfig{Issuers: []string{iss.Issuer()}, Audiences: []string{iss.Audience()}}, NewStaticKeySet(iss.PublicJWKs()...))
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := ParsePrefixes("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	alice := idflow.UserRef{TenantID: "t-one", UserID: "alice"}
	life := &fakeLifecycle{disabled: map[idflow.UserRef]bool{}, groups: map[idflow.UserRef][]string{alice: {"research", "g-1"}}}
	sess := fakeSessions{id: "sess-1", csrf: "csrf-1", p: authtest.User("alice", "t-one")}
	a := New(Config{Bearer: v, Sessions: sess, Proxy: &ProxyConfig{Trusted: trusted}, Revocations: life, Directory: life})

	token := iss.Sign(iss.OIDC("alice").With("tid", "t-one").With("groups", []string{"g-1", "g-2"}))
	otherTenant := iss.Sign(iss.OIDC("alice").With("tid", "t-two"))
	app := iss.Sign(iss.EntraV2App(authtest.EntraApp{TenantID: "t-one", ClientID: "some-app", Issuer: iss.Issuer(), IDTyp: true}))

	bearer := func(tok string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
		r.RemoteAddr = untrustedPeer
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	cookie := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
		r.RemoteAddr = untrustedPeer
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "sess-1"})
		return r
	}
	proxy := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
		r.RemoteAddr = "10.1.2.3:4000"
		r.Header.Set("X-Authenticated-User", "alice")
		r.Header.Set("X-Authenticated-Tenant", "t-one")
		return r
	}
	ctx := context.Background()
	ways := map[string]func() (idflow.Principal, error){
		"bearer":       func() (idflow.Principal, error) { return a.Authenticate(bearer(token), nil) },
		"token":        func() (idflow.Principal, error) { return a.AuthenticateToken(bearer(""), token, nil) },
		"verify token": func() (idflow.Principal, error) { return a.VerifyToken(ctx, token, nil) },
		"cookie":       func() (idflow.Principal, error) { return a.Authenticate(cookie(), nil) },
		"proxy header": func() (idflow.Principal, error) { return a.Authenticate(proxy(), nil) },
	}
	for name, way := range ways {
		p, err := way() // the bearer token is now in the verified-token cache
		if err != nil {
			t.Fatalf("%s before: %v", name, err)
		}
		if !slices.Contains(p.Groups, "research") || !slices.Contains(p.DirectoryGroups, "research") || slices.Contains(p.TokenGroups, "research") {
			t.Fatalf("%s: groups %v, token %v, directory %v; want the directory's research group merged", name, p.Groups, p.TokenGroups, p.DirectoryGroups)
		}
	}
	life.set(alice, true)
	for name, way := range ways {
		_, err := way()
		if idflow.ErrorCode(err) != idflow.EFORBIDDEN || !errors.Is(err, ErrUserDisabled) {
			t.Fatalf("%s while disabled: %v; want 403 user disabled", name, err)
		}
	}
	// The same user id in another tenant is another user; apps are no users.
	if _, err := a.Authenticate(bearer(otherTenant), nil); err != nil {
		t.Fatalf("alice of t-two: %v", err)
	}
	if _, err := a.Authenticate(bearer(app), nil); err != nil {
		t.Fatalf("app-only token: %v", err)
	}
	life.set(alice, false)
	for name, way := range ways {
		if _, err := way(); err != nil {
			t.Fatalf("%s re-enabled: %v", name, err)
		}
	}
}
