package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/sqlite"
	"github.com/idflow/idflow/vault"
)

// TestConnectionsWithOIDCProvider: idflow in production mode, an
// independent OpenID provider (npm oidc-provider) as the downstream
// provider, and a resource server that trusts only that provider. Through
// the HTTP API: alice connects (the test plays her browser), bob cannot
// complete her flow, the connection is listed without tokens and sealed at
// rest, a workflow step calls the resource server as alice, and DELETE
// revokes at the provider.
func TestConnectionsWithOIDCProvider(t *testing.T) {
	t.Parallel()
	const audience = "https://downstream.idflow.test"
	addr := freeAddr(t)
	base := "http://" + addr
	op := testsvc.StartOIDCProvider(t, testsvc.OIDCProviderOptions{Audiences: []string{audience},
		RedirectURIs: []string{base + "/api/v1/connections/op/callback"}})
	ep := op.Endpoints(t)
	rs := op.StartResourceServer(t, audience)
	providers := filepath.Join(t.TempDir(), "providers.json")
	writeFile(t, providers, fmt.Sprintf(`{"providers": [{"name": "op", "authorize_url": %q, "token_url": %q,
		"revocation_url": %q, "client_id": %q, "client_secret_env": "OP_CLIENT_SECRET",
		"scopes": ["openid", "api"], "api_base_url": %q}]}`,
		ep.Authorization, ep.Token, ep.Revocation, testsvc.OIDCDownstreamClientID, rs.URL))
	key, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	s := startProdIdflow(t, map[string]string{"IDFLOW_LISTEN": addr, "IDFLOW_DATA_DIR": dataDir,
		"IDFLOW_PROVIDERS_FILE": providers, "IDFLOW_VAULT_KEY": key, "OP_CLIENT_SECRET": testsvc.OIDCDownstreamClientSecret})
	if strings.Contains(s.stderr.String(), testsvc.OIDCDownstreamClientSecret) || strings.Contains(s.stderr.String(), key) {
		t.Fatal("a secret was logged")
	}

	r := s.As(t, callerAlice, "POST", "/api/v1/connections/op/connect", nil)
	mustStatus(t, r, http.StatusOK)
	var start struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	r.JSON(t, &start)
	cb := op.Browse(t, start.AuthorizeURL, "alice")
	if cb == nil || !strings.HasPrefix(cb.String(), base+"/api/v1/connections/op/callback?") {
		t.Fatalf("the provider redirected to %v", cb)
	}
	callback := cb.Path + "?" + cb.RawQuery
	mustStatus(t, s.As(t, callerBob, "GET", callback, nil), http.StatusNotFound)
	r = s.As(t, callerAlice, "GET", callback, nil)
	mustStatus(t, r, http.StatusOK)
	aliceID := s.UserID(t, callerAlice)

	r = s.As(t, callerAlice, "GET", "/api/v1/connections", nil)
	mustStatus(t, r, http.StatusOK)
	var list idflow.List[idflow.Connection]
	r.JSON(t, &list)
	if len(list.Items) != 1 || list.Items[0].Provider != "op" || list.Items[0].UserID != aliceID ||
		list.Items[0].Status != idflow.ConnectionActive || bytes.Contains(r.Body, []byte("token")) {
		t.Fatalf("alice's connections: %s", r.Body)
	}
	r = s.As(t, callerBob, "GET", "/api/v1/connections", nil)
	if r.JSON(t, &list); len(list.Items) != 0 {
		t.Fatalf("bob's connections: %s", r.Body)
	}

	// A workflow step calls the resource server as alice.
	wfID := s.create(t, callerAlice, "/api/v1/workflows", map[string]any{"name": "downstream",
		"definition": map[string]any{"steps": []any{map[string]any{"id": "who", "type": "tool", "tool": "downstream_get",
			"args": map[string]any{"provider": "op", "path": "/whoami"}}}}})
	runID := s.create(t, callerAlice, "/api/v1/workflows/"+wfID+"/runs", map[string]any{"input": nil})
	if status := s.waitRun(t, callerAlice, runID); status != idflow.RunSucceeded {
		t.Fatalf("run %s", status)
	}
	r = s.As(t, callerAlice, "GET", "/api/v1/runs/"+runID, nil)
	var run idflow.Run
	r.JSON(t, &run)
	var out struct {
		Body struct {
			Sub      string `json:"sub"`
			ClientID string `json:"client_id"`
		} `json:"body"`
	}
	if err := json.Unmarshal(run.Output, &out); err != nil || out.Body.Sub != "alice" || out.Body.ClientID != testsvc.OIDCDownstreamClientID {
		t.Fatalf("run output %s (%v); want the provider's alice", run.Output, err)
	}
	for _, auth := range rs.Seen() {
		if strings.Contains(auth, s.Token(t, callerAlice)) {
			t.Fatal("alice's inbound token reached the downstream API")
		}
	}

	// At rest: sealed, bound to alice and the provider.
	db, err := sqlite.Open(t.Context(), filepath.Join(dataDir, "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	aliceP := authtest.User(aliceID, "t-one")
	sc, err := db.GetCredential(t.Context(), aliceP, "op")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := vault.ParseKeyring(key)
	plain, err := keys.Open(aliceID, "op", sc.KeyID, sc.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	var sealed struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(plain, &sealed); err != nil || sealed.RefreshToken == "" {
		t.Fatalf("sealed payload: %v", err)
	}
	if bytes.Contains(sc.Ciphertext, []byte(sealed.RefreshToken)) {
		t.Fatal("the refresh token is stored in the clear")
	}
	if _, err := keys.Open(s.UserID(t, callerBob), "op", sc.KeyID, sc.Ciphertext); err == nil {
		t.Fatal("alice's ciphertext opens for bob")
	}
	if !op.Active(t, sealed.RefreshToken, testsvc.OIDCDownstreamClientID, testsvc.OIDCDownstreamClientSecret) {
		t.Fatal("the stored refresh token is not active at the provider")
	}

	// DELETE revokes at the provider, then forgets.
	mustStatus(t, s.As(t, callerBob, "DELETE", "/api/v1/connections/op", nil), http.StatusNotFound)
	mustStatus(t, s.As(t, callerAlice, "DELETE", "/api/v1/connections/op", nil), http.StatusNoContent)
	if op.Active(t, sealed.RefreshToken, testsvc.OIDCDownstreamClientID, testsvc.OIDCDownstreamClientSecret) {
		t.Fatal("the refresh token is still active after DELETE")
	}
	r = s.As(t, callerAlice, "GET", "/api/v1/connections", nil)
	if r.JSON(t, &list); len(list.Items) != 0 {
		t.Fatalf("after DELETE: %s", r.Body)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestServeConnectionsConfiguration: production refuses providers without
// IDFLOW_VAULT_KEY, a bad key and a bad providers file; without providers
// no key is needed and no connection route exists.
func TestServeConnectionsConfiguration(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	good := filepath.Join(t.TempDir(), "providers.json")
	writeFile(t, good, `{"providers": [{"name": "x", "authorize_url": "https://x.example/a", "token_url": "https://x.example/t",
		"client_id": "c", "api_base_url": "https://api.x.example"}]}`)
	typo := filepath.Join(t.TempDir(), "typo.json")
	writeFile(t, typo, `{"providers": [{"name": "x", "authorize_url": "https://x.example/a", "token_url": "https://x.example/t",
		"client_id": "c", "api_base_url": "https://api.x.example", "clientsecret": "oops"}]}`)
	key, _ := vault.GenerateKey()
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"providers without a vault key", map[string]string{"IDFLOW_PROVIDERS_FILE": good}, "IDFLOW_VAULT_KEY is required"},
		{"a bad vault key", map[string]string{"IDFLOW_PROVIDERS_FILE": good, "IDFLOW_VAULT_KEY": "c2hvcnQ="}, "IDFLOW_VAULT_KEY"},
		{"an unknown field", map[string]string{"IDFLOW_PROVIDERS_FILE": typo, "IDFLOW_VAULT_KEY": key}, "unknown field"},
		{"a missing file", map[string]string{"IDFLOW_PROVIDERS_FILE": good + ".nope", "IDFLOW_VAULT_KEY": key}, "IDFLOW_PROVIDERS_FILE"},
	} {
		env := map[string]string{"IDFLOW_OIDC_ISSUER": iss.Issuer(), "IDFLOW_OIDC_AUDIENCE": iss.Audience(),
			"IDFLOW_DATA_DIR": t.TempDir(), "IDFLOW_LISTEN": "127.0.0.1:0"}
		for k, v := range c.env {
			env[k] = v
		}
		_, _, err := runCmd(t, env, "serve")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error mentioning %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error shows the key", c.name)
		}
	}

	// Without providers: no key needed, and no connection routes.
	dir := t.TempDir()
	s := startProdIdflow(t, map[string]string{"IDFLOW_DATA_DIR": dir})
	mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/connections", nil), http.StatusNotFound)
	if _, err := os.Stat(filepath.Join(dir, "vault-key")); !os.IsNotExist(err) {
		t.Fatalf("production generated a vault key file: %v", err)
	}
}

// TestExchangeProviderInBackgroundRun: a workflow step that names a
// token-exchange provider fails clearly — a background run carries a
// Principal snapshot, never the token that started it — and the token
// endpoint is never asked.
func TestExchangeProviderInBackgroundRun(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
	}))
	t.Cleanup(sts.Close)
	providers := filepath.Join(t.TempDir(), "providers.json")
	writeFile(t, providers, fmt.Sprintf(`{"providers": [{"name": "crm", "exchange": "rfc8693", "token_url": %q,
		"client_id": "idflow", "client_secret": "s", "api_base_url": %q}]}`, sts.URL, sts.URL))
	key, _ := vault.GenerateKey()
	s := startProdIdflow(t, map[string]string{"IDFLOW_PROVIDERS_FILE": providers, "IDFLOW_VAULT_KEY": key})

	wfID := s.create(t, callerAlice, "/api/v1/workflows", map[string]any{"name": "exchange in the background",
		"definition": map[string]any{"steps": []any{map[string]any{"id": "x", "type": "tool", "tool": "downstream_get",
			"args": map[string]any{"provider": "crm", "path": "/contacts"}}}}})
	runID := s.create(t, callerAlice, "/api/v1/workflows/"+wfID+"/runs", map[string]any{"input": nil})
	if status := s.waitRun(t, callerAlice, runID); status != idflow.RunFailed {
		t.Fatalf("run %s, want failed", status)
	}
	var run idflow.Run
	s.As(t, callerAlice, "GET", "/api/v1/runs/"+runID, nil).JSON(t, &run)
	if !strings.Contains(run.Error, "exchanges the caller's own bearer token") {
		t.Fatalf("run error %q", run.Error)
	}
	if asked.Load() != 0 {
		t.Fatalf("the token endpoint was asked %d times", asked.Load())
	}
	// An exchange provider needs no connect flow.
	r := s.As(t, callerAlice, "POST", "/api/v1/connections/crm/connect", nil)
	mustStatus(t, r, http.StatusBadRequest)
}
