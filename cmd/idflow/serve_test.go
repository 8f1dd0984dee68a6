package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// syncBuffer is an io.Writer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// envOf turns a map into a getenv that sees nothing of the real environment.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// runningServer is `idflow serve` running inside the test through run().
type runningServer struct {
	URL            string
	stdout, stderr *syncBuffer
}

// freeAddr returns 127.0.0.1:<a port that was free a moment ago>.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startIdflow runs `idflow serve args...` with env (plus a fresh data dir
// and a free loopback port unless env names them) until the test ends, and
// returns once /healthz answers 200. Stopping it is cancelling its context.
func startIdflow(t *testing.T, env map[string]string, args ...string) *runningServer {
	t.Helper()
	for attempt := 0; ; attempt++ {
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		if e["IDFLOW_DATA_DIR"] == "" {
			e["IDFLOW_DATA_DIR"] = t.TempDir()
		}
		if e["IDFLOW_LISTEN"] == "" {
			e["IDFLOW_LISTEN"] = freeAddr(t)
		}
		if _, ok := e["IDFLOW_RATE_LIMITS"]; !ok {
			// Test suites send requests far faster than a person; the
			// tests of the limits (limits_test.go) set their own.
			e["IDFLOW_RATE_LIMITS"] = "read=off,write=off,turn=off,ingest=off,mcp=off,ws=off"
		}
		srv, err := tryStartIdflow(t, e, args)
		if err == nil {
			return srv
		}
		// Another process may take the port between freeAddr and listen.
		if attempt < 2 && strings.Contains(err.Error(), "address already in use") && env["IDFLOW_LISTEN"] == "" {
			continue
		}
		t.Fatalf("idflow serve %s: %v", strings.Join(args, " "), err)
	}
}

func tryStartIdflow(t *testing.T, env map[string]string, args []string) (*runningServer, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := &runningServer{URL: "http://" + env["IDFLOW_LISTEN"], stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve"}, args...), envOf(env), srv.stdout, srv.stderr)
	}()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("idflow serve returned %v after cancel", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("idflow serve did not stop within 30s of cancel")
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	pause := 5 * time.Millisecond
	for {
		resp, err := client.Get(srv.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("idflow stderr:\n%s", srv.stderr.String())
					}
				})
				return srv, nil
			}
		}
		select {
		case err := <-done:
			cancel()
			if err == nil {
				err = errors.New("returned nil before it was healthy")
			}
			return nil, err
		case <-time.After(pause):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("/healthz did not answer 200 within 60s; stderr:\n" + srv.stderr.String())
		}
		if pause < 200*time.Millisecond {
			pause *= 2
		}
	}
}

// get sends GET path with an optional bearer token.
func (s *runningServer) get(t *testing.T, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp, body
}

// meResponse is the part of GET /api/v1/me the tests read.
type meResponse struct {
	UserID     string `json:"user_id"`
	TenantID   string `json:"tenant_id"`
	Email      string `json:"email"`
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Issuer     string `json:"issuer"`
	AuthMethod string `json:"auth_method"`
}

// me calls /api/v1/me with token and requires 200.
func (s *runningServer) me(t *testing.T, token string) meResponse {
	t.Helper()
	resp, body := s.get(t, "/api/v1/me", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/me: status %d, body %s", resp.StatusCode, body)
	}
	var m meResponse
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET /api/v1/me: %v: %s", err, body)
	}
	return m
}

// runCmd runs an idflow command that is expected to return by itself.
func runCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	err = run(ctx, args, envOf(env), &out, &errOut)
	if ctx.Err() != nil {
		t.Fatalf("idflow %s did not return within 30s (err %v)", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), err
}

func TestServeRefusesUnsafeConfigurations(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{
			name: "issuer without audience",
			env:  map[string]string{"IDFLOW_OIDC_ISSUER": "http://127.0.0.1:1"},
			want: "IDFLOW_OIDC_AUDIENCE is required",
		},
		{
			name: "issuer without audience, as flags",
			args: []string{"--oidc-issuer", "http://127.0.0.1:1"},
			want: "IDFLOW_OIDC_AUDIENCE is required",
		},
		{
			name: "no issuer and no trusted proxies",
			env:  map[string]string{},
			want: "no authentication configured",
		},
		{
			name: "audience alone",
			env:  map[string]string{"IDFLOW_OIDC_AUDIENCE": "api://idflow"},
			want: "no authentication configured",
		},
		{
			name: "dev on a non-loopback address",
			env:  map[string]string{"IDFLOW_LISTEN": "0.0.0.0:0"},
			args: []string{"--dev"},
			want: "loopback",
		},
		{
			name: "dev on all interfaces (empty host)",
			env:  map[string]string{"IDFLOW_LISTEN": ":0"},
			args: []string{"--dev"},
			want: "loopback",
		},
		{
			name: "platform admin role equal to the admin role",
			env:  map[string]string{"IDFLOW_PLATFORM_ADMIN_ROLE": "admin"},
			want: "IDFLOW_PLATFORM_ADMIN_ROLE must differ from IDFLOW_ADMIN_ROLE",
		},
		{
			name: "dev with an issuer",
			env:  map[string]string{"IDFLOW_LISTEN": "127.0.0.1:0", "IDFLOW_OIDC_ISSUER": "http://127.0.0.1:1"},
			args: []string{"--dev"},
			want: "IDFLOW_OIDC_ISSUER",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"IDFLOW_DATA_DIR": t.TempDir()}
			for k, v := range tc.env {
				env[k] = v
			}
			if env["IDFLOW_LISTEN"] == "" {
				env["IDFLOW_LISTEN"] = freeAddr(t)
			}
			_, _, err := runCmd(t, env, append([]string{"serve"}, tc.args...)...)
			if err == nil {
				t.Fatalf("serve started; want a refusal mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve: %v; want an error mentioning %q", err, tc.want)
			}
			// Refused before listening: the port is still free.
			if addr := env["IDFLOW_LISTEN"]; !strings.HasSuffix(addr, ":0") {
				l, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatalf("the refused server holds %s: %v", addr, err)
				}
				l.Close()
			}
		})
	}
}

func TestDevModeMountsDevIssuerAndDevToken(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, nil, "--dev")

	if out := srv.stdout.String(); !strings.Contains(out, "DEV MODE") || !strings.Contains(out, "loopback only") {
		t.Fatalf("dev banner missing or not loud enough:\n%s", out)
	}
	resp, body := srv.get(t, "/dev/idp/.well-known/openid-configuration", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dev issuer discovery: status %d", resp.StatusCode)
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &disc); err != nil || disc.Issuer != srv.URL+"/dev/idp" {
		t.Fatalf("dev issuer discovery: issuer %q (%v); want %q", disc.Issuer, err, srv.URL+"/dev/idp")
	}

	env := map[string]string{}
	token := func(user string) string {
		out, errOut, err := runCmd(t, env, "dev-token", user, "--server", srv.URL)
		if err != nil {
			t.Fatalf("dev-token %s: %v\n%s", user, err, errOut)
		}
		tok := strings.TrimSpace(out)
		if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
			t.Fatalf("dev-token %s did not print one JWT", user)
		}
		return tok
	}
	alice, bob := srv.me(t, token("alice")), srv.me(t, token("bob"))
	if alice.UserID != "dev-alice" || alice.Kind != "user" || alice.TenantID != "t-one" {
		t.Fatalf("alice's dev token: %+v; want user dev-alice of t-one", alice)
	}
	if bob.UserID != "dev-bob" || bob.Kind != "user" {
		t.Fatalf("bob's dev token: %+v; want user dev-bob", bob)
	}
	if alice.UserID == bob.UserID {
		t.Fatalf("alice and bob share the user id %q", alice.UserID)
	}
	if alice.Issuer != srv.URL+"/dev/idp" {
		t.Fatalf("alice's issuer %q; want the dev issuer", alice.Issuer)
	}

	// The dev admin administers t-one; the dev platform admin every tenant.
	if out := srv.stdout.String(); !strings.Contains(out, `role "platform-admin" every tenant`) {
		t.Fatalf("the dev banner does not name the platform admin role:\n%s", out)
	}
	tokens := map[string]string{}
	for _, who := range []string{"carol", "admin", "platform"} { // each seen once
		tokens[who] = token(who)
		srv.me(t, tokens[who])
	}
	for who, want := range map[string][]string{"admin": {"dev-admin", "dev-alice", "dev-bob"},
		"platform": {"dev-admin", "dev-alice", "dev-bob", "dev-carol", "dev-platform"}} {
		resp, body := srv.get(t, "/api/v1/admin/users", tokens[who])
		var users struct {
			Items []struct {
				UserID string `json:"user_id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(body, &users); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("admin users as %s: %d %s", who, resp.StatusCode, body)
		}
		var got []string
		for _, u := range users.Items {
			got = append(got, u.UserID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("admin users as %s = %v; want %v", who, got, want)
		}
	}

	// An unknown dev user gets no token at all.
	if _, _, err := runCmd(t, env, "dev-token", "mallory", "--server", srv.URL); err == nil {
		t.Fatal("dev-token mallory succeeded; want a refusal")
	}
	// Without a token, /me is refused even in dev mode.
	if resp, _ := srv.get(t, "/api/v1/me", ""); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token in dev mode: status %d, WWW-Authenticate %q; want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// fakeIssuer is a minimal OpenID provider (discovery and JWKS only) so that
// production mode can start without node.
func fakeIssuer(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks",
			"authorization_endpoint": srv.URL + "/auth", "token_endpoint": srv.URL + "/token",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jwks)
	})
	return srv.URL
}

func TestProductionModeHasNoDevIssuer(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"oidc":          {"IDFLOW_OIDC_ISSUER": fakeIssuer(t), "IDFLOW_OIDC_AUDIENCE": "api://idflow"},
		"trusted proxy": {"IDFLOW_TRUSTED_PROXIES": "127.0.0.1/32"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := startIdflow(t, env)
			for _, path := range []string{"/dev/idp/.well-known/openid-configuration", "/dev/idp/jwks", "/dev/idp/token"} {
				if resp, _ := srv.get(t, path, ""); resp.StatusCode != http.StatusNotFound {
					t.Fatalf("production mode: GET %s answered %d; want 404", path, resp.StatusCode)
				}
			}
			if strings.Contains(srv.stdout.String(), "DEV MODE") {
				t.Fatal("production mode printed the dev banner")
			}
			// dev-token finds no dev issuer to ask.
			if _, _, err := runCmd(t, map[string]string{}, "dev-token", "alice", "--server", srv.URL); err == nil {
				t.Fatal("dev-token got a token from a production server")
			}
			if resp, _ := srv.get(t, "/api/v1/me", ""); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("production /api/v1/me without credentials: %d; want 401", resp.StatusCode)
			}
		})
	}
}

// TestServeStopsOnCancel checks the harness itself: cancelling run's context
// stops the server and frees its port.
func TestServeStopsOnCancel(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := map[string]string{"IDFLOW_LISTEN": addr, "IDFLOW_DATA_DIR": t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--dev"}, envOf(env), io.Discard, io.Discard) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("serve never became healthy")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return within 30s of cancel")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s still held after serve returned: %v", addr, err)
	}
	l.Close()
}
