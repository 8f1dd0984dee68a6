package connections_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/connections"
	"github.com/idflow/idflow/sqlite"
	"github.com/idflow/idflow/vault"
)

var (
	alice = authtest.User("alice", "t-one")
	bob   = authtest.User("bob", "t-one")
)

type auditRec struct {
	mu     sync.Mutex
	events []string
}

func (a *auditRec) Audit(_ context.Context, p idflow.Principal, action, resource string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	code := "ok"
	if err != nil {
		code = idflow.ErrorCode(err)
	}
	a.events = append(a.events, fmt.Sprintf("%s %s %s %s", p.UserID, action, resource, code))
}

func (a *auditRec) has(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.events {
		if e == s {
			return true
		}
	}
	return false
}

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func keyring(t *testing.T) *vault.Keyring {
	t.Helper()
	k, _ := vault.GenerateKey()
	ring, err := vault.ParseKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

func registry(t *testing.T, js string, env map[string]string) *connections.Registry {
	t.Helper()
	r, err := connections.ParseProviders([]byte(js), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func manager(t *testing.T, reg *connections.Registry, audit connections.Auditor) *connections.Manager {
	t.Helper()
	m, err := connections.New(connections.Config{PublicURL: "https://idflow.example", Providers: reg,
		Store: openStore(t), Keys: keyring(t), Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseProviders(t *testing.T) {
	env := map[string]string{"GH_SECRET": "s3cret-from-env"}
	r := registry(t, `{"providers": [
		{"name": "github", "authorize_url": "https://github.com/login/oauth/authorize",
		 "token_url": "https://github.com/login/oauth/access_token", "client_id": "gh",
		 "client_secret_env": "GH_SECRET", "scopes": ["repo"], "api_base_url": "https://api.github.com/"},
		{"name": "graph", "exchange": "entra_obo", "token_url": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
		 "client_id": "app", "client_secret": "inline", "scopes": ["https://graph.microsoft.com/.default"],
		 "api_base_url": "https://graph.microsoft.com/v1.0"},
		{"name": "local", "authorize_url": "http://127.0.0.1:9/a", "token_url": "http://127.0.0.1:9/t",
		 "client_id": "c", "api_base_url": "http://[::1]:9/api"}
	]}`, env)
	if got := r.Names(); strings.Join(got, ",") != "github,graph,local" {
		t.Fatalf("Names = %v", got)
	}
	gh, _ := r.Get("github")
	if !gh.Connectable() || gh.ClientSecret != "" {
		t.Fatalf("github: connectable %v, inline secret %q", gh.Connectable(), gh.ClientSecret)
	}
	graph, _ := r.Get("graph")
	if graph.Connectable() {
		t.Fatal("an entra_obo provider is connectable")
	}
	for _, s := range []string{fmt.Sprint(gh), fmt.Sprintf("%v %+v %#v", graph, graph, graph)} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "inline") {
			t.Fatalf("a secret shows: %s", s)
		}
	}

	base := `"authorize_url": "https://a.example/auth", "token_url": "https://a.example/token", "client_id": "c", "api_base_url": "https://api.example"`
	for _, c := range []struct{ name, js, want string }{
		{"unknown field", `{"providers": [{"name": "x", ` + base + `, "client_secert": "typo"}]}`, "unknown field"},
		{"unknown top-level field", `{"provider": []}`, "unknown field"},
		{"trailing", `{"providers": []} {}`, "trailing"},
		{"bad name", `{"providers": [{"name": "Has Space", ` + base + `}]}`, "name"},
		{"twice", `{"providers": [{"name": "x", ` + base + `}, {"name": "x", ` + base + `}]}`, "twice"},
		{"both secrets", `{"providers": [{"name": "x", ` + base + `, "client_secret": "a", "client_secret_env": "GH_SECRET"}]}`, "not both"},
		{"empty env", `{"providers": [{"name": "x", ` + base + `, "client_secret_env": "MISSING"}]}`, "MISSING"},
		{"plain http", `{"providers": [{"name": "x", "authorize_url": "http://a.example/auth", "token_url": "https://a.example/t", "client_id": "c", "api_base_url": "https://api.example"}]}`, "https"},
		{"no token url", `{"providers": [{"name": "x", "authorize_url": "https://a.example/auth", "client_id": "c", "api_base_url": "https://api.example"}]}`, "token_url"},
		{"no api", `{"providers": [{"name": "x", "authorize_url": "https://a.example/auth", "token_url": "https://a.example/t", "client_id": "c"}]}`, "api_base_url"},
		{"bad exchange", `{"providers": [{"name": "x", ` + base + `, "exchange": "passthrough"}]}`, "exchange"},
		{"reserved param", `{"providers": [{"name": "x", ` + base + `, "authorize_params": {"redirect_uri": "https://evil"}}]}`, "redirect_uri"},
		{"obo without scopes", `{"providers": [{"name": "x", "exchange": "entra_obo", "token_url": "https://a.example/t", "client_id": "c", "client_secret": "s", "api_base_url": "https://api.example"}]}`, "scopes"},
		{"audience on a connect provider", `{"providers": [{"name": "x", ` + base + `, "audience": "y"}]}`, "exchange providers only"},
		{"basic without secret", `{"providers": [{"name": "x", ` + base + `, "token_auth_method": "client_secret_basic"}]}`, "secret"},
	} {
		_, err := connections.ParseProviders([]byte(c.js), func(k string) string { return env[k] })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error mentioning %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows a secret: %v", c.name, err)
		}
	}
}

// fakeAPI records what a downstream API receives.
type fakeAPI struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func newFakeAPI(t *testing.T) *fakeAPI {
	a := &fakeAPI{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.reqs = append(a.reqs, r)
		a.body = append(a.body, string(b))
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery,
			"authorization": r.Header.Get("Authorization")})
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAPI) last(t *testing.T) (*http.Request, string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.reqs) == 0 {
		t.Fatal("the API received nothing")
	}
	return a.reqs[len(a.reqs)-1], a.body[len(a.body)-1]
}

// everywhere reports whether s appears in any part of what the API received.
func (a *fakeAPI) everywhere(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, r := range a.reqs {
		if strings.Contains(r.URL.String(), s) || strings.Contains(a.body[i], s) {
			return true
		}
		for _, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, s) {
					return true
				}
			}
		}
	}
	return false
}

// exchangeEndpoint is a fake token endpoint that exchanges known subject
// tokens (RFC 8693 or Entra OBO) and records every form it gets.
type exchangeEndpoint struct {
	srv   *httptest.Server
	mu    sync.Mutex
	forms []url.Values
	auth  []string
	count atomic.Int64
}

func newExchangeEndpoint(t *testing.T, subjects map[string]string) *exchangeEndpoint {
	e := &exchangeEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.count.Add(1)
		_ = r.ParseForm()
		e.mu.Lock()
		e.forms = append(e.forms, r.PostForm)
		e.auth = append(e.auth, r.Header.Get("Authorization"))
		e.mu.Unlock()
		subject := r.PostForm.Get("subject_token") + r.PostForm.Get("assertion")
		user, ok := subjects[subject]
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"unknown subject"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "exchanged-for-" + user, "token_type": "Bearer",
			"expires_in": 600, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *exchangeEndpoint) lastForm() (url.Values, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.forms[len(e.forms)-1], e.auth[len(e.auth)-1]
}

// asRequest is a context like the HTTP layer builds for a bearer request.
func asRequest(p idflow.Principal, inbound string) context.Context {
	ctx := idflow.NewContext(context.Background(), p)
	return idflow.WithInboundToken(ctx, p, inbound)
}

func get(t *testing.T, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestRFC8693Exchange: the caller's own inbound token is the subject_token
// at the token endpoint, and the API receives the exchanged token — never
// the inbound one.
func TestRFC8693Exchange(t *testing.T) {
	const aliceInbound, bobInbound = "eyJ.alice-inbound.sig", "eyJ.bob-inbound.sig"
	te := newExchangeEndpoint(t, map[string]string{aliceInbound: "alice", bobInbound: "bob"})
	api := newFakeAPI(t)
	reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "crm", "exchange": "rfc8693", "token_url": %q,
		"client_id": "idflow-crm", "client_secret_env": "CRM_SECRET", "audience": "crm-api", "resource": "https://crm.example/",
		"scopes": ["crm.read"], "api_base_url": %q}]}`, te.srv.URL, api.srv.URL+"/v2"), map[string]string{"CRM_SECRET": "crm-secret"})
	m := manager(t, reg, nil)

	req := get(t, "/contacts?limit=3")
	req.Header.Set("Authorization", "Bearer "+aliceInbound) // a caller's header is never forwarded
	req.Header.Set("Cookie", "idflow_session=abc")
	resp, err := m.Do(asRequest(alice, aliceInbound), alice, "crm", req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	form, auth := te.lastForm()
	want := map[string]string{
		"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": aliceInbound,
		"subject_token_type":   "urn:ietf:params:oauth:token-type:access_token",
		"requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"audience":             "crm-api", "resource": "https://crm.example/", "scope": "crm.read",
	}
	for k, v := range want {
		if form.Get(k) != v {
			t.Errorf("token endpoint got %s=%q, want %q", k, form.Get(k), v)
		}
	}
	if form.Get("client_secret") != "" || auth != "Basic "+base64.StdEncoding.EncodeToString([]byte("idflow-crm:crm-secret")) {
		t.Errorf("client authentication: header %q, form secret %q; want client_secret_basic", auth, form.Get("client_secret"))
	}
	r, _ := api.last(t)
	if got := r.Header.Get("Authorization"); got != "Bearer exchanged-for-alice" {
		t.Fatalf("the API got Authorization %q, want the exchanged token", got)
	}
	if r.URL.Path != "/v2/contacts" || r.URL.RawQuery != "limit=3" || r.Header.Get("Cookie") != "" {
		t.Fatalf("the API got %s (cookie %q)", r.URL, r.Header.Get("Cookie"))
	}
	if api.everywhere(aliceInbound) || api.everywhere("alice-inbound") {
		t.Fatal("the inbound token reached the downstream API")
	}

	// bob's call exchanges bob's token: nothing is shared or cached across users.
	resp, err = m.Do(asRequest(bob, bobInbound), bob, "crm", get(t, "/contacts"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r, _ := api.last(t); r.Header.Get("Authorization") != "Bearer exchanged-for-bob" {
		t.Fatalf("bob's call carried %q", r.Header.Get("Authorization"))
	}
	if n := te.count.Load(); n != 2 {
		t.Fatalf("%d exchanges, want one per call", n)
	}

	// A background run (no inbound token) fails clearly, and asks nobody.
	_, err = m.Do(idflow.NewContext(context.Background(), alice), alice, "crm", get(t, "/contacts"))
	if idflow.ErrorCode(err) != idflow.EFORBIDDEN || !strings.Contains(idflow.ErrorMessage(err), "background runs") {
		t.Fatalf("without an inbound token: %v", err)
	}
	// bob's inbound token never serves a call made as alice.
	_, err = m.Do(idflow.WithInboundToken(context.Background(), bob, bobInbound), alice, "crm", get(t, "/contacts"))
	if idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("alice's call with bob's inbound token: %v", err)
	}
	_, err = m.Do(asRequest(bob, bobInbound), alice, "crm", get(t, "/contacts"))
	if idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("a call as alice in bob's request: %v", err)
	}
	if n := te.count.Load(); n != 2 {
		t.Fatalf("refused calls reached the token endpoint (%d requests)", n)
	}
	// An inbound token the provider refuses is a clear 403, not a fallback.
	_, err = m.Do(asRequest(alice, "eyJ.stranger.sig"), alice, "crm", get(t, "/contacts"))
	if idflow.ErrorCode(err) != idflow.EFORBIDDEN || !strings.Contains(idflow.ErrorMessage(err), "invalid_grant") {
		t.Fatalf("refused exchange: %v", err)
	}
}

func TestEntraOnBehalfOf(t *testing.T) {
	const inbound = "eyJ.alice-entra.sig"
	te := newExchangeEndpoint(t, map[string]string{inbound: "alice"})
	api := newFakeAPI(t)
	reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "graph", "exchange": "entra_obo", "token_url": %q,
		"client_id": "idflow-app", "client_secret_env": "OBO_SECRET", "scopes": ["https://graph.microsoft.com/.default"],
		"api_base_url": %q}]}`, te.srv.URL, api.srv.URL), map[string]string{"OBO_SECRET": "obo-secret"})
	m := manager(t, reg, nil)
	resp, err := m.Do(asRequest(alice, inbound), alice, "graph", get(t, "/me"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	form, auth := te.lastForm()
	for k, v := range map[string]string{"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": inbound,
		"requested_token_use": "on_behalf_of", "scope": "https://graph.microsoft.com/.default",
		"client_id": "idflow-app", "client_secret": "obo-secret"} {
		if form.Get(k) != v {
			t.Errorf("token endpoint got %s=%q, want %q", k, form.Get(k), v)
		}
	}
	if auth != "" || form.Get("subject_token") != "" {
		t.Errorf("OBO request: Authorization %q, subject_token %q", auth, form.Get("subject_token"))
	}
	if r, _ := api.last(t); r.Header.Get("Authorization") != "Bearer exchanged-for-alice" || api.everywhere(inbound) {
		t.Fatalf("the API got %q", r.Header.Get("Authorization"))
	}
}

// codeProvider is a fake authorization server for the connect flow: it
// remembers each authorize request's PKCE challenge and checks the verifier.
type codeProvider struct {
	srv        *httptest.Server
	mu         sync.Mutex
	challenges map[string]string // code → challenge
	refreshed  atomic.Int64
	revoked    []string
}

func newCodeProvider(t *testing.T) *codeProvider {
	cp := &codeProvider{challenges: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		f := r.PostForm
		switch f.Get("grant_type") {
		case "authorization_code":
			cp.mu.Lock()
			ch := cp.challenges[f.Get("code")]
			delete(cp.challenges, f.Get("code"))
			cp.mu.Unlock()
			sum := sha256.Sum256([]byte(f.Get("code_verifier")))
			if ch == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != ch {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
				return
			}
			user := strings.TrimPrefix(f.Get("code"), "code-for-")
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + user, "refresh_token": "rt-" + user,
				"token_type": "bearer", "expires_in": "3600", "scope": "read write"})
		default:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		}
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		cp.mu.Lock()
		cp.revoked = append(cp.revoked, r.PostForm.Get("token_type_hint")+"="+r.PostForm.Get("token"))
		cp.mu.Unlock()
	})
	cp.srv = httptest.NewServer(mux)
	t.Cleanup(cp.srv.Close)
	return cp
}

// authorize plays the user's browser at the provider: it approves as user
// and returns the callback query.
func (cp *codeProvider) authorize(t *testing.T, authorizeURL, user string) url.Values {
	t.Helper()
	u, err := url.Parse(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	code := "code-for-" + user
	cp.mu.Lock()
	cp.challenges[code] = q.Get("code_challenge")
	cp.mu.Unlock()
	return url.Values{"code": {code}, "state": {q.Get("state")}}
}

func TestConnectFlow(t *testing.T) {
	ctx := t.Context()
	cp := newCodeProvider(t)
	api := newFakeAPI(t)
	reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "acme", "authorize_url": %q, "token_url": %q,
		"revocation_url": %q, "client_id": "idflow-acme", "client_secret": "acme-secret", "scopes": ["read", "write"],
		"authorize_params": {"prompt": "consent"}, "api_base_url": %q}]}`,
		cp.srv.URL+"/authorize?tenant=x", cp.srv.URL+"/token", cp.srv.URL+"/revoke", api.srv.URL), nil)
	audit := &auditRec{}
	m := manager(t, reg, audit)

	raw, err := m.Connect(ctx, alice, "acme")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	if u.Path != "/authorize" || q.Get("tenant") != "x" || q.Get("response_type") != "code" || q.Get("client_id") != "idflow-acme" ||
		q.Get("redirect_uri") != "https://idflow.example/api/v1/connections/acme/callback" || len(q.Get("state")) < 40 ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("scope") != "read write" ||
		q.Get("prompt") != "consent" || q.Get("client_secret") != "" {
		t.Fatalf("authorize URL %s", raw)
	}
	cb := cp.authorize(t, raw, "alice")

	// bob cannot complete alice's flow: not found, audited, and alice's
	// state survives his attempt.
	_, err = m.Callback(ctx, bob, "acme", cb)
	if idflow.ErrorCode(err) != idflow.ENOTFOUND || err.Error() != idflow.NotFound("connect state").Error() {
		t.Fatalf("bob's callback with alice's state: %v", err)
	}
	if !audit.has("bob connection.connect connection/acme not_found") {
		t.Fatalf("bob's attempt was not audited: %v", audit.events)
	}
	if list, _ := m.ListConnections(ctx, bob); len(list) != 0 {
		t.Fatalf("bob has %+v", list)
	}

	c, err := m.Callback(ctx, alice, "acme", cb)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != alice.UserID || c.Provider != "acme" || c.Status != idflow.ConnectionActive ||
		strings.Join(c.Scopes, " ") != "read write" || c.ExpiresAt == nil {
		t.Fatalf("connection %+v", c)
	}
	if !audit.has("alice connection.connect_start connection/acme ok") || !audit.has("alice connection.connect connection/acme ok") {
		t.Fatalf("alice's connect was not audited: %v", audit.events)
	}
	// A state is single use.
	if _, err := m.Callback(ctx, alice, "acme", cb); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("replayed callback: %v", err)
	}

	resp, err := m.Do(idflow.NewContext(ctx, alice), alice, "acme", get(t, "/whoami"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r, _ := api.last(t); r.Header.Get("Authorization") != "Bearer at-alice" {
		t.Fatalf("the API got %q", r.Header.Get("Authorization"))
	}
	// bob has no connection: a clear 409, never alice's token.
	_, err = m.Do(idflow.NewContext(ctx, bob), bob, "acme", get(t, "/whoami"))
	if idflow.ErrorCode(err) != idflow.ECONFLICT || !errors.Is(err, vault.ErrNotConnected) {
		t.Fatalf("bob's call: %v", err)
	}

	if err := m.Disconnect(ctx, bob, "acme"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("bob disconnecting alice: %v", err)
	}
	if err := m.Disconnect(ctx, alice, "acme"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cp.revoked, ",") != "refresh_token=rt-alice,access_token=at-alice" {
		t.Fatalf("revoked %v", cp.revoked)
	}
	if list, _ := m.ListConnections(ctx, alice); len(list) != 0 {
		t.Fatalf("after disconnect: %+v", list)
	}

	// A denied consent, a wrong provider, an unknown provider.
	raw, _ = m.Connect(ctx, alice, "acme")
	st := mustQuery(t, raw).Get("state")
	if _, err := m.Callback(ctx, alice, "acme", url.Values{"state": {st}, "error": {"access_denied"}}); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("denied consent: %v", err)
	}
	if _, err := m.Connect(ctx, alice, "nope"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("unknown provider: %v", err)
	}
	// A code the provider refuses.
	raw, _ = m.Connect(ctx, alice, "acme")
	cb = cp.authorize(t, raw, "alice")
	cb.Set("code", "forged")
	if _, err := m.Callback(ctx, alice, "acme", cb); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("refused code: %v", err)
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// TestDoStaysUnderTheAPIBase: a request path can never leave the provider's
// API base, nor name another host.
func TestDoStaysUnderTheAPIBase(t *testing.T) {
	api := newFakeAPI(t)
	te := newExchangeEndpoint(t, map[string]string{"in": "alice"})
	reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "x", "exchange": "rfc8693", "token_url": %q, "client_id": "c",
		"api_base_url": %q}]}`, te.srv.URL, api.srv.URL+"/base/"), nil)
	m := manager(t, reg, nil)
	ctx := asRequest(alice, "in")
	for path, want := range map[string]string{
		"/whoami":              "/base/whoami",
		"whoami":               "/base/whoami",
		"/../../token":         "/base/token",
		"/a/../../b/./c":       "/base/b/c",
		"/%2e%2e/%2e%2e/token": "/base/token",
		"/":                    "/base/",
	} {
		resp, err := m.Do(ctx, alice, "x", get(t, path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if r, _ := api.last(t); r.URL.Path != want {
			t.Errorf("%s reached %s, want %s", path, r.URL.Path, want)
		}
	}
	for _, abs := range []string{"https://evil.example/steal", "//evil.example/steal"} {
		req := get(t, "/x")
		req.URL, _ = url.Parse(abs)
		if _, err := m.Do(ctx, alice, "x", req); idflow.ErrorCode(err) != idflow.EINVALID {
			t.Errorf("%s: %v, want refused", abs, err)
		}
	}
	if _, err := m.Do(ctx, alice, "unknown", get(t, "/")); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("unknown provider: %v", err)
	}
	if _, err := m.Do(ctx, authtest.App("svc"), "x", get(t, "/")); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("app-only caller: %v", err)
	}
}

// TestRefreshThroughOAuth: the manager's own refresher rotates refresh
// tokens and turns invalid_grant into needs_consent.
func TestRefreshThroughOAuth(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	live := map[string]bool{"rt-1": true}
	serial := 1
	var forms []url.Values
	te := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		defer mu.Unlock()
		forms = append(forms, r.PostForm)
		w.Header().Set("Content-Type", "application/json")
		rt := r.PostForm.Get("refresh_token")
		if !live[rt] {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"grant revoked"}`))
			return
		}
		delete(live, rt)
		serial++
		next := fmt.Sprintf("rt-%d", serial)
		live[next] = true
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("at-%d", serial), "refresh_token": next,
			"token_type": "Bearer", "expires_in": 1})
	}))
	t.Cleanup(te.Close)
	api := newFakeAPI(t)
	reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "acme", "authorize_url": "%s/a", "token_url": "%s/t",
		"client_id": "pub", "api_base_url": %q}]}`, te.URL, te.URL, api.srv.URL), nil)
	m := manager(t, reg, nil)
	if _, err := m.Vault().Put(ctx, alice, "acme", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1"}); err != nil {
		t.Fatal(err)
	}
	// The token has no expiry: used as is. Then one that expires in 1 s is
	// always inside the 5-minute window: every Get refreshes.
	if tok, err := m.Vault().Get(ctx, alice, "acme"); err != nil || tok.AccessToken != "at-1" {
		t.Fatalf("%q, %v", tok.AccessToken, err)
	}
	if _, err := m.Vault().Put(ctx, alice, "acme", vault.Token{AccessToken: "at-1", RefreshToken: "rt-1",
		Expiry: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	for want := 2; want <= 3; want++ {
		tok, err := m.Vault().Get(ctx, alice, "acme")
		if err != nil || tok.AccessToken != fmt.Sprintf("at-%d", want) {
			t.Fatalf("refresh %d: %q, %v", want, tok.AccessToken, err)
		}
	}
	mu.Lock()
	if len(forms) != 2 || forms[0].Get("client_id") != "pub" || forms[1].Get("refresh_token") != "rt-2" {
		t.Fatalf("refresh forms %v", forms)
	}
	delete(live, "rt-3") // the provider revokes the grant
	mu.Unlock()
	_, err := m.Do(idflow.NewContext(ctx, alice), alice, "acme", get(t, "/x"))
	if idflow.ErrorCode(err) != idflow.ECONFLICT || !errors.Is(err, vault.ErrNeedsConsent) {
		t.Fatalf("after invalid_grant: %v", err)
	}
	list, _ := m.ListConnections(ctx, alice)
	if len(list) != 1 || list[0].Status != idflow.ConnectionNeedsConsent {
		t.Fatalf("connections %+v", list)
	}
	if api.everywhere("at-") {
		t.Fatal("a call went out after the connection lost its consent")
	}
}

// TestToken: the token a caller sends itself (the downstream MCP
// servers') follows the rules of Do: the user's own vault token, an
// exchange of the user's own inbound token, never another user's.
func TestToken(t *testing.T) {
	const aliceInbound = "eyJ.alice-inbound.sig"
	te := newExchangeEndpoint(t, map[string]string{aliceInbound: "alice"})
	reg := registry(t, fmt.Sprintf(`{"providers": [
		{"name": "gh", "authorize_url": "https://gh.example/a", "token_url": "https://gh.example/t", "client_id": "c",
		 "api_base_url": "https://api.gh.example"},
		{"name": "crm", "exchange": "rfc8693", "token_url": %q, "client_id": "idflow-crm", "client_secret": "s",
		 "api_base_url": "https://crm.example"}]}`, te.srv.URL), nil)
	m := manager(t, reg, nil)
	ctx := t.Context()

	if _, err := m.Token(ctx, alice, "gh"); !errors.Is(err, vault.ErrNotConnected) || idflow.ErrorCode(err) != idflow.ECONFLICT {
		t.Fatalf("not connected: %v", err)
	}
	if _, err := m.Vault().Put(ctx, alice, "gh", vault.Token{AccessToken: "gh-alice", RefreshToken: "gh-refresh",
		Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tok, err := m.Token(idflow.NewContext(ctx, alice), alice, "gh")
	if err != nil || tok.AccessToken != "gh-alice" || tok.RefreshToken != "" {
		t.Fatalf("alice's token: %q (refresh %q) %v", tok.AccessToken, tok.RefreshToken, err)
	}
	if _, err := m.Token(ctx, bob, "gh"); !errors.Is(err, vault.ErrNotConnected) {
		t.Fatalf("bob got a token: %v", err)
	}
	if _, err := m.Token(idflow.NewContext(ctx, bob), alice, "gh"); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("a token of alice in bob's request: %v", err)
	}
	if _, err := m.Token(ctx, authtest.App("svc"), "gh"); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("an app-only caller: %v", err)
	}
	if _, err := m.Token(ctx, alice, "nope"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("an unknown provider: %v", err)
	}

	tok, err = m.Token(asRequest(alice, aliceInbound), alice, "crm")
	if err != nil || tok.AccessToken != "exchanged-for-alice" || tok.Expiry.IsZero() {
		t.Fatalf("exchanged: %q %v %v", tok.AccessToken, tok.Expiry, err)
	}
	if _, err := m.Token(idflow.NewContext(ctx, alice), alice, "crm"); !errors.Is(err, connections.ErrNoInboundToken) || idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("no inbound token: %v", err)
	}
	if _, err := m.Token(idflow.WithInboundToken(ctx, bob, aliceInbound), alice, "crm"); !errors.Is(err, connections.ErrNoInboundToken) {
		t.Fatalf("an inbound token bound to bob, for alice: %v", err)
	}
	if n := te.count.Load(); n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
}
