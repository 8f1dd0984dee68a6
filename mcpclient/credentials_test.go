package mcpclient_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/connections"
	"github.com/idflow/idflow/mcpclient"
	"github.com/idflow/idflow/sqlite"
	"github.com/idflow/idflow/vault"
)

// These tests run against a go-sdk MCP server in process, which records
// the Authorization header of every request: for credentials that are not
// idflow's assertions (vault tokens, exchanged tokens), and for the
// session and timing rules.

type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// Modes of a goDownstream.
const (
	modeUp   = iota
	modeHang // accept the request, never answer
	modeDown // 503
)

type goDownstream struct {
	URL    string
	tokens map[string]string // bearer → user; nil accepts any bearer

	mode    atomic.Int32
	hanging atomic.Int32 // requests held in modeHang
	lists   atomic.Int32 // tools/list requests
	mu      sync.Mutex
	seen    []string // the Authorization header of every request
}

type whoOut struct {
	User   string   `json:"user"`
	Bearer string   `json:"bearer"`
	Caps   []string `json:"caps"` // the client capabilities offered
}

func capsOf(c *mcp.ClientCapabilities) []string {
	out := []string{}
	if c == nil {
		return out
	}
	if c.RootsV2 != nil {
		out = append(out, "roots")
	}
	if c.Sampling != nil {
		out = append(out, "sampling")
	}
	if c.Elicitation != nil {
		out = append(out, "elicitation")
	}
	return out
}

type bigIn struct {
	Bytes int `json:"bytes"`
}

func startGoDownstream(t *testing.T, tokens map[string]string) *goDownstream {
	t.Helper()
	d := &goDownstream{tokens: tokens}
	server := mcp.NewServer(&mcp.Implementation{Name: "go-downstream", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "Who the bearer is."},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoOut, error) {
			bearer := strings.TrimPrefix(req.Extra.Header.Get("Authorization"), "Bearer ")
			return nil, whoOut{User: d.tokens[bearer], Bearer: bearer, Caps: capsOf(req.ClientCapabilities())}, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "big", Description: "Answers that many bytes of text."},
		func(_ context.Context, _ *mcp.CallToolRequest, in bigIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("x", in.Bytes)}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch d.mode.Load() {
		case modeHang:
			d.hanging.Add(1)
			defer d.hanging.Add(-1)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		case modeDown:
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			if strings.Contains(string(body), `"method":"tools/list"`) {
				d.lists.Add(1)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		auth := r.Header.Get("Authorization")
		d.mu.Lock()
		d.seen = append(d.seen, auth)
		d.mu.Unlock()
		if _, ok := d.tokens[strings.TrimPrefix(auth, "Bearer ")]; d.tokens != nil && !ok {
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	d.URL = srv.URL + "/mcp"
	return d
}

func (d *goDownstream) authorizations() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seen)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tokenEndpoint is a provider's token endpoint: refresh and RFC 8693
// exchange of known tokens.
type tokenEndpoint struct {
	srv       *httptest.Server
	exchanges atomic.Int64
	refreshes atomic.Int64
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	te := &tokenEndpoint{}
	te.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		answer := func(access, refresh string, expires int) {
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "refresh_token": refresh,
				"token_type": "Bearer", "expires_in": expires})
		}
		switch r.PostForm.Get("grant_type") {
		case "refresh_token":
			te.refreshes.Add(1)
			if r.PostForm.Get("refresh_token") == "r-alice-1" {
				answer("gh-alice-2", "r-alice-2", 3600)
				return
			}
		case "urn:ietf:params:oauth:grant-type:token-exchange":
			te.exchanges.Add(1)
			if user, ok := map[string]string{"inbound-alice": "alice", "inbound-alice-2": "alice", "inbound-bob": "bob"}[r.PostForm.Get("subject_token")]; ok {
				answer("exchanged-for-"+user, "", 600)
				return
			}
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
	}))
	t.Cleanup(te.srv.Close)
	return te
}

// connectionsManager is a real connections.Manager on SQLite with a
// connectable provider gh and an RFC 8693 exchange provider graph.
func connectionsManager(t *testing.T, te *tokenEndpoint, clk *clock) *connections.Manager {
	t.Helper()
	reg, err := connections.ParseProviders([]byte(fmt.Sprintf(`{"providers": [
		{"name": "gh", "authorize_url": "https://gh.example/authorize", "token_url": %q, "client_id": "idflow",
		 "client_secret": "gh-secret", "api_base_url": "https://api.gh.example"},
		{"name": "graph", "exchange": "rfc8693", "token_url": %q, "client_id": "idflow-x", "client_secret": "x-secret",
		 "audience": "graph-mcp", "api_base_url": "https://graph.example"}]}`, te.srv.URL, te.srv.URL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := vault.ParseKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	m, err := connections.New(connections.Config{PublicURL: "https://idflow.example", Providers: reg, Store: db, Keys: keys, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestConnectionServer: a user without a connection is told how to
// connect (and the downstream gets nothing); with one, the user's own
// vault token reaches the downstream, refreshed when it nears expiry.
func TestConnectionServer(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	te := newTokenEndpoint(t)
	mgr := connectionsManager(t, te, clk)
	ds := startGoDownstream(t, map[string]string{"gh-alice-1": "alice", "gh-alice-2": "alice", "gh-bob-1": "bob"})
	s := servers(t, fmt.Sprintf(`{"servers": [{"name": "github", "url": %q, "auth": {"type": "connection", "provider": "gh"}}]}`, ds.URL),
		mcpclient.Deps{Connections: mgr})
	ctx := t.Context()
	const connect = "connect gh first: POST /api/v1/connections/gh/connect"

	at := toolsOf(t, s, alice)
	if names(at) != "[github__connect]" {
		t.Fatalf("alice without a connection: %s", names(at))
	}
	placeholder := at["github__connect"]
	if _, err := run(ctx, t, placeholder, alice, `{}`); !errContains(err, idflow.ECONFLICT, connect) {
		t.Fatalf("github__connect: %v", err)
	}
	if got := ds.authorizations(); len(got) != 0 {
		t.Fatalf("the downstream was called without a connection: %q", got)
	}

	if _, err := mgr.Vault().Put(ctx, alice, "gh", vault.Token{AccessToken: "gh-alice-1", RefreshToken: "r-alice-1",
		TokenType: "Bearer", Expiry: clk.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	at = toolsOf(t, s, alice)
	who, ok := at["github__whoami"]
	if !ok {
		t.Fatalf("alice once connected: %s", names(at))
	}
	v, err := run(ctx, t, who, alice, `{}`)
	if m := asMap(t, v); err != nil || m["user"] != "alice" || m["bearer"] != "gh-alice-1" {
		t.Fatalf("alice's call: %v %v", v, err)
	}
	// bob has no connection: the connect answer, never alice's token.
	if bt := toolsOf(t, s, bob); names(bt) != "[github__connect]" {
		t.Fatalf("bob: %s", names(bt))
	}
	if _, err := run(ctx, t, who, bob, `{}`); !errContains(err, idflow.ECONFLICT, connect) {
		t.Fatalf("bob calling with alice's tool: %v", err)
	}
	for _, a := range ds.authorizations() {
		if a != "Bearer gh-alice-1" {
			t.Fatalf("the downstream got %q", a)
		}
	}
	// Near expiry the vault refreshes; the next request carries the new token.
	clk.Advance(56 * time.Minute)
	v, err = run(ctx, t, who, alice, `{}`)
	if m := asMap(t, v); err != nil || m["user"] != "alice" || m["bearer"] != "gh-alice-2" || te.refreshes.Load() != 1 {
		t.Fatalf("after refresh: %v %v (%d refreshes)", v, err, te.refreshes.Load())
	}
	if v, err := run(ctx, t, placeholder, alice, `{}`); err != nil || asMap(t, v)["connected"] != true {
		t.Fatalf("github__connect once connected: %v %v", v, err)
	}
}

// TestExchangeServer: the downstream gets a token exchanged from the
// caller's own sign-in token (never that token itself), reused while it
// lives; a call without one — a background run — answers a clear error.
func TestExchangeServer(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	te := newTokenEndpoint(t)
	mgr := connectionsManager(t, te, clk)
	ds := startGoDownstream(t, map[string]string{"exchanged-for-alice": "alice", "exchanged-for-bob": "bob"})
	var logs logBuffer
	s := servers(t, fmt.Sprintf(`{"servers": [{"name": "graph", "url": %q, "auth": {"type": "exchange", "provider": "graph"}}]}`, ds.URL),
		mcpclient.Deps{Connections: mgr, Log: logs.logger(), Now: clk.Now})
	signedIn := func(p idflow.Principal, inbound string) context.Context {
		return idflow.WithInboundToken(idflow.NewContext(t.Context(), p), p, inbound)
	}

	actx := signedIn(alice, "inbound-alice")
	ts, err := s.Tools(actx, alice)
	if err != nil || len(ts) != 2 || ts[1].Name != "graph__whoami" {
		t.Fatalf("alice's tools: %d %v", len(ts), err)
	}
	who := ts[1]
	for range 2 {
		v, err := run(actx, t, who, alice, `{}`)
		if m := asMap(t, v); err != nil || m["user"] != "alice" || m["bearer"] != "exchanged-for-alice" {
			t.Fatalf("alice's call: %v %v", v, err)
		}
	}
	if n := te.exchanges.Load(); n != 1 {
		t.Fatalf("%d exchanges for one sign-in token; the exchanged token is reused while it lives", n)
	}
	for _, a := range ds.authorizations() {
		if strings.Contains(a, "inbound") {
			t.Fatalf("the inbound token reached the downstream: %q", a)
		}
	}
	// A new sign-in token is exchanged anew.
	if v, err := run(signedIn(alice, "inbound-alice-2"), t, who, alice, `{}`); err != nil || asMap(t, v)["user"] != "alice" || te.exchanges.Load() != 2 {
		t.Fatalf("with a new inbound token: %v %v (%d exchanges)", v, err, te.exchanges.Load())
	}
	// The exchanged token expires after 600 s: exchanged again.
	clk.Advance(9 * time.Minute)
	if _, err := run(signedIn(alice, "inbound-alice-2"), t, who, alice, `{}`); err != nil || te.exchanges.Load() != 3 {
		t.Fatalf("near expiry: %v (%d exchanges)", err, te.exchanges.Load())
	}

	// A background run carries no inbound token.
	const noToken = "graph acts with a token exchanged from your own sign-in token, which this call does not carry"
	bg := idflow.NewContext(context.Background(), alice)
	if _, err := run(bg, t, who, alice, `{}`); !errContains(err, idflow.EFORBIDDEN, noToken) {
		t.Fatalf("without an inbound token: %v", err)
	}
	if ts, err := s.Tools(idflow.NewContext(context.Background(), bob), bob); err != nil || len(ts) != 0 {
		t.Fatalf("bob's tools in a background run: %v %v", ts, err)
	}
	if !strings.Contains(logs.String(), `left out of the tool list" server=graph user_id=bob`) {
		t.Fatalf("log: %s", logs.String())
	}
	// bob's sign-in token never serves a call made as alice.
	exchanges := te.exchanges.Load()
	if _, err := run(signedIn(bob, "inbound-bob"), t, who, alice, `{}`); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("alice's call in bob's request: %v", err)
	}
	if te.exchanges.Load() != exchanges {
		t.Fatal("bob's token was exchanged for a call as alice")
	}
	// bob with his own sign-in gets his own token.
	if v, err := run(signedIn(bob, "inbound-bob"), t, who, bob, `{}`); err != nil || asMap(t, v)["bearer"] != "exchanged-for-bob" {
		t.Fatalf("bob's call: %v %v", v, err)
	}
}

// jwtClaims decodes a JWT's payload without verifying it (the TypeScript
// server's tests verify).
func jwtClaims(t *testing.T, authorization string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(authorization, "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", authorization)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAssertionClaimsAndCache: an assertion carries exactly the claims of
// the design, lives 5 minutes, is reused until near its expiry, and is
// signed again when it nears expiry or the user's claims change.
func TestAssertionClaimsAndCache(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	ds := startGoDownstream(t, nil)
	signer := newSigner(t, "https://idflow.example")
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: signer, Now: clk.Now})
	who := toolsOf(t, s, alice)["tickets__whoami"]
	call := func(p idflow.Principal) string {
		t.Helper()
		v, err := run(t.Context(), t, who, p, `{}`)
		if err != nil {
			t.Fatal(err)
		}
		return asMap(t, v)["bearer"].(string)
	}
	first := call(alice)
	c := jwtClaims(t, first)
	want := map[string]any{"iss": "https://idflow.example", "aud": ds.URL, "sub": "alice", "tid": "t-one",
		"email": alice.Email, "name": "alice", "groups": []any{"engineering"}}
	for k, v := range want {
		if fmt.Sprint(c[k]) != fmt.Sprint(v) {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 || c["nbf"] != c["iat"] {
		t.Errorf("exp %v iat %v nbf %v: want a 5 minute assertion", exp, iat, c["nbf"])
	}
	for k := range c {
		if _, ok := want[k]; !ok && k != "exp" && k != "iat" && k != "nbf" {
			t.Errorf("unexpected claim %s", k)
		}
	}
	if again := call(alice); again != first {
		t.Fatal("the assertion was not reused")
	}
	if b := call(bob); jwtClaims(t, b)["sub"] != "bob" || b == first {
		t.Fatalf("bob's assertion: %v", jwtClaims(t, b))
	}
	// New groups: a new assertion at once.
	moved := alice
	moved.Groups = []string{"engineering", "ops"}
	if g := jwtClaims(t, call(moved))["groups"]; fmt.Sprint(g) != "[engineering ops]" {
		t.Fatalf("after a group change the downstream saw groups %v", g)
	}
	// Within the last fifth of its life it is signed again.
	third := call(alice)
	clk.Advance(3*time.Minute + 50*time.Second)
	if call(alice) != third {
		t.Fatal("the assertion was renewed too early")
	}
	clk.Advance(20 * time.Second)
	if renewed := call(alice); renewed == third || jwtClaims(t, renewed)["iat"].(float64) <= jwtClaims(t, third)["iat"].(float64) {
		t.Fatal("the assertion was not renewed near its expiry")
	}
}

// TestSessionsBounded: sessions are per (user, server), at most
// MaxSessions (the least recently used idle one goes), closed when idle,
// and a session in use is never taken from its user.
func TestSessionsBounded(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	ds := startGoDownstream(t, nil)
	signer := newSigner(t, "https://idflow.example")
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: signer, Now: clk.Now,
		Limits: mcpclient.Limits{MaxSessions: 2, IdleTimeout: time.Minute, CallTimeout: 5 * time.Second}})
	who := toolsOf(t, s, alice)["tickets__whoami"]
	for _, p := range []idflow.Principal{alice, bob, user("carol")} {
		if v, err := run(t.Context(), t, who, p, `{}`); err != nil || jwtClaims(t, asMap(t, v)["bearer"].(string))["sub"] != p.UserID {
			t.Fatalf("%s: %v %v", p.UserID, v, err)
		}
		if n := s.OpenSessions(); n > 2 {
			t.Fatalf("%d sessions, at most 2", n)
		}
	}
	clk.Advance(2 * time.Minute)
	if _, err := run(t.Context(), t, who, user("dave"), `{}`); err != nil {
		t.Fatal(err)
	}
	if n := s.OpenSessions(); n != 1 {
		t.Fatalf("%d sessions after the others idled out; want dave's only", n)
	}

	// dave's session is busy (the server holds his call): erin cannot
	// take it, and gets a clear refusal rather than dave's session.
	one := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: signer,
		Limits: mcpclient.Limits{MaxSessions: 1, CallTimeout: 3 * time.Second}})
	who = toolsOf(t, one, user("dave"))["tickets__whoami"]
	ds.mode.Store(modeHang)
	done := make(chan error, 1)
	go func() {
		_, err := who.Run(t.Context(), user("dave"), json.RawMessage(`{}`))
		done <- err
	}()
	waitFor(t, "dave's call to reach the server", func() bool { return ds.hanging.Load() == 1 })
	if _, err := run(t.Context(), t, who, user("erin"), `{}`); idflow.ErrorCode(err) != idflow.ERATELIMIT {
		t.Fatalf("erin while dave's session is busy: %v", err)
	}
	ds.mode.Store(modeUp)
	if err := <-done; !errContains(err, idflow.EUNAVAILABLE, "tickets did not answer in time") {
		t.Fatalf("dave's held call: %v", err)
	}
	if v, err := run(t.Context(), t, who, user("erin"), `{}`); err != nil || jwtClaims(t, asMap(t, v)["bearer"].(string))["sub"] != "erin" {
		t.Fatalf("erin once dave's call ended: %v %v", v, err)
	}
}

// TestServerGoesDown: the tools of a server that stops answering, or
// answers 503, fail with a clear error in time; it is left out of fresh
// lists; it is used again once it is back.
func TestServerGoesDown(t *testing.T) {
	t.Parallel()
	ds := startGoDownstream(t, nil)
	var logs logBuffer
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: newSigner(t, "https://idflow.example"),
		Log: logs.logger(), Limits: mcpclient.Limits{CallTimeout: time.Second, ListTimeout: time.Second}})
	who := toolsOf(t, s, alice)["tickets__whoami"]
	if _, err := run(t.Context(), t, who, alice, `{}`); err != nil {
		t.Fatal(err)
	}
	ds.mode.Store(modeHang)
	began := time.Now()
	if _, err := run(t.Context(), t, who, alice, `{}`); !errContains(err, idflow.EUNAVAILABLE, "tickets did not answer in time") || time.Since(began) > 5*time.Second {
		t.Fatalf("a hanging server: %v after %s", err, time.Since(began))
	}
	ds.mode.Store(modeDown)
	if _, err := run(t.Context(), t, who, alice, `{}`); !errContains(err, idflow.EUNAVAILABLE, "tickets is unavailable") {
		t.Fatalf("a server answering 503: %v", err)
	}
	if ts := toolsOf(t, s, bob); len(ts) != 0 {
		t.Fatalf("bob's fresh list while down: %s", names(ts))
	}
	if !strings.Contains(logs.String(), `left out of the tool list" server=tickets user_id=bob`) {
		t.Fatalf("log: %s", logs.String())
	}
	ds.mode.Store(modeUp)
	if v, err := run(t.Context(), t, who, alice, `{}`); err != nil || jwtClaims(t, asMap(t, v)["bearer"].(string))["sub"] != "alice" {
		t.Fatalf("once back: %v %v", v, err)
	}
}

// TestRedirectsAreNotFollowed: a server answering with a redirect does not
// get the user's credential carried to wherever it points.
func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(elsewhere.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	s := servers(t, assertionFile(assertionServer("tickets", redirector.URL+"/mcp")),
		mcpclient.Deps{Signer: newSigner(t, "https://idflow.example")})
	if ts := toolsOf(t, s, alice); len(ts) != 0 {
		t.Fatalf("tools: %s", names(ts))
	}
	if hits.Load() != 0 {
		t.Fatal("a redirect carried the assertion to another host")
	}
}

// TestDownstreamCannotAskOrFlood: idflow offers a downstream no client
// capability (no sampling, elicitation or roots: it cannot make idflow's
// model or user do anything), and a response past 4 MiB is cut off with
// a clear error, not read into memory.
func TestDownstreamCannotAskOrFlood(t *testing.T) {
	t.Parallel()
	ds := startGoDownstream(t, nil)
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: newSigner(t, "https://idflow.example")})
	at := toolsOf(t, s, alice)
	v, err := run(t.Context(), t, at["tickets__whoami"], alice, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if caps := asMap(t, v)["caps"]; fmt.Sprint(caps) != "[]" {
		t.Fatalf("idflow offered the downstream %v", caps)
	}
	if v, err := run(t.Context(), t, at["tickets__big"], alice, `{"bytes": 1000}`); err != nil || v != strings.Repeat("x", 1000) {
		t.Fatalf("a small answer: %v", err)
	}
	_, err = run(t.Context(), t, at["tickets__big"], alice, `{"bytes": 5000000}`)
	if !errContains(err, idflow.EUNAVAILABLE, "tickets is unavailable") {
		t.Fatalf("a 5 MB answer: %v", err)
	}
	if v, err := run(t.Context(), t, at["tickets__whoami"], alice, `{}`); err != nil || asMap(t, v)["bearer"] == "" {
		t.Fatalf("after a cut-off answer: %v %v", v, err)
	}
}

// TestToolListsCachedPerUser: a user's list of a server is reused for
// ListTTL, and never serves another user.
func TestToolListsCachedPerUser(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	ds := startGoDownstream(t, nil)
	s := servers(t, assertionFile(assertionServer("tickets", ds.URL)), mcpclient.Deps{Signer: newSigner(t, "https://idflow.example"),
		Now: clk.Now, Limits: mcpclient.Limits{ListTTL: time.Minute}})
	for i, step := range []struct {
		p     idflow.Principal
		after time.Duration
		lists int32
	}{
		{alice, 0, 1},
		{alice, 30 * time.Second, 1}, // cached
		{bob, 0, 2},                  // bob's own list
		{alice, 31 * time.Second, 3}, // alice's has expired
		{bob, 0, 3},
	} {
		clk.Advance(step.after)
		if ts := toolsOf(t, s, step.p); len(ts) != 2 {
			t.Fatalf("step %d: %s", i, names(ts))
		}
		if n := ds.lists.Load(); n != step.lists {
			t.Fatalf("step %d (%s): %d tools/list requests, want %d", i, step.p.UserID, n, step.lists)
		}
	}
}
