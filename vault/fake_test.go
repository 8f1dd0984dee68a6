package vault_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/idflow/idflow/sqlite"
	"github.com/idflow/idflow/vault"
)

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time               { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration)      { c.ns.Add(int64(d)) }
func (c *fakeClock) Set(t time.Time)              { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) In(d time.Duration) time.Time { return c.Now().Add(d) }

// tokenEndpoint is a counting fake OAuth token endpoint with refresh-token
// rotation: every refresh token works once; reusing one is invalid_grant.
type tokenEndpoint struct {
	srv   *httptest.Server
	clock *fakeClock

	mu      sync.Mutex
	live    map[string]string // refresh token → user
	serial  map[string]int    // user → last serial issued
	refused map[string]bool   // users whose grant the provider revoked

	count atomic.Int64 // refresh requests
	// gate, when set, holds every refresh request until it is closed.
	gate    chan struct{}
	entered chan struct{} // receives once per request, when gate is set
}

func newTokenEndpoint(t testing.TB, clock *fakeClock) *tokenEndpoint {
	te := &tokenEndpoint{clock: clock, live: map[string]string{}, serial: map[string]int{}, refused: map[string]bool{}}
	te.srv = httptest.NewServer(http.HandlerFunc(te.serve))
	t.Cleanup(te.srv.Close)
	return te
}

// issue returns the first token pair of user, valid for ttl.
func (te *tokenEndpoint) issue(user string, ttl time.Duration) vault.Token {
	te.mu.Lock()
	defer te.mu.Unlock()
	return te.issueLocked(user, ttl)
}

func (te *tokenEndpoint) issueLocked(user string, ttl time.Duration) vault.Token {
	n := te.serial[user] + 1
	te.serial[user] = n
	rt := fmt.Sprintf("rt-%s-%d", user, n)
	te.live[rt] = user
	return vault.Token{AccessToken: fmt.Sprintf("at-%s-%d", user, n), RefreshToken: rt, TokenType: "Bearer",
		Expiry: te.clock.In(ttl), Scopes: []string{"read"}}
}

func (te *tokenEndpoint) refuse(user string) {
	te.mu.Lock()
	defer te.mu.Unlock()
	te.refused[user] = true
}

func (te *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	te.count.Add(1)
	if te.gate != nil {
		te.entered <- struct{}{}
		<-te.gate
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	te.mu.Lock()
	rt := r.PostForm.Get("refresh_token")
	user, ok := te.live[rt]
	delete(te.live, rt) // rotation: single use
	if !ok || te.refused[user] {
		te.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token revoked"}`))
		return
	}
	tok := te.issueLocked(user, time.Hour)
	te.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok.AccessToken, "refresh_token": tok.RefreshToken,
		"token_type": "Bearer", "expires_in": 3600, "scope": "read"})
}

// httpRefresher is a minimal vault.Refresher against a tokenEndpoint; the
// production one (package connections) is tested on its own.
type httpRefresher struct {
	url   string
	clock *fakeClock
}

func (h httpRefresher) Refresh(ctx context.Context, provider, refreshToken string) (vault.Token, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, strings.NewReader(form.Encode()))
	if err != nil {
		return vault.Token{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return vault.Token{}, err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
		Error        string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return vault.Token{}, err
	}
	if out.Error == "invalid_grant" {
		return vault.Token{}, fmt.Errorf("token endpoint: %w", vault.ErrInvalidGrant)
	}
	if resp.StatusCode != http.StatusOK {
		return vault.Token{}, fmt.Errorf("token endpoint: status %d", resp.StatusCode)
	}
	return vault.Token{AccessToken: out.AccessToken, RefreshToken: out.RefreshToken, TokenType: "Bearer",
		Expiry: h.clock.In(time.Duration(out.ExpiresIn) * time.Second)}, nil
}

// world is a vault over a real SQLite store and a fake token endpoint.
type world struct {
	db     *sqlite.DB
	keyB64 string // the key of keys, in IDFLOW_VAULT_KEY form
	keys   *vault.Keyring
	clock  *fakeClock
	te     *tokenEndpoint
	v      *vault.Vault
	audit  *auditLog
}

type auditLog struct {
	mu     sync.Mutex
	events []string
}

func (a *auditLog) record(_ context.Context, p idflow.Principal, action, resource string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, fmt.Sprintf("%s %s %s %v", p.UserID, action, resource, idflow.ErrorCode(err)))
}

func (a *auditLog) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string{}, a.events...)
}

func openDB(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newKeyring(t testing.TB) (string, *vault.Keyring) {
	t.Helper()
	k, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := vault.ParseKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, ring
}

func newWorld(t testing.TB, mod func(*vault.Config)) *world {
	t.Helper()
	w := &world{db: openDB(t), clock: newClock(), audit: &auditLog{}}
	w.keyB64, w.keys = newKeyring(t)
	w.te = newTokenEndpoint(t, w.clock)
	w.v = w.vault(t, w.db, mod)
	return w
}

// vault returns another Vault (a replica) over store with w's keys and clock.
func (w *world) vault(t testing.TB, store idflow.ConnectionStore, mod func(*vault.Config)) *vault.Vault {
	t.Helper()
	cfg := vault.Config{Store: store, Keys: w.keys, Refresher: httpRefresher{url: w.te.srv.URL, clock: w.clock},
		Now: w.clock.Now, Audit: w.audit.record}
	if mod != nil {
		mod(&cfg)
	}
	v, err := vault.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// connect stores a first token of p for provider "fake", valid for ttl.
func (w *world) connect(t testing.TB, p idflow.Principal, ttl time.Duration) vault.Token {
	t.Helper()
	tok := w.te.issue(p.UserID, ttl)
	if _, err := w.v.Put(context.Background(), p, "fake", tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// stored opens p's stored credential directly, as a test oracle.
func (w *world) stored(t testing.TB, p idflow.Principal) (idflow.SealedCredential, map[string]any) {
	t.Helper()
	sc, err := w.db.GetCredential(context.Background(), p, "fake")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := w.keys.Open(p.UserID, "fake", sc.KeyID, sc.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(plain, &m); err != nil {
		t.Fatal(err)
	}
	return sc, m
}
