package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/vault"
)

// TestServeMCPServersConfiguration: IDFLOW_MCP_SERVERS_FILE is validated
// at start; a bad file refuses the start with a message naming it.
func TestServeMCPServersConfiguration(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, body)
		return p
	}
	providers := file("providers.json", `{"providers": [{"name": "gh", "authorize_url": "https://gh.example/a",
		"token_url": "https://gh.example/t", "client_id": "c", "api_base_url": "https://api.gh.example"}]}`)
	key, _ := vault.GenerateKey()
	for _, c := range []struct {
		name, body string
		env        map[string]string
		want       string
	}{
		{"an unknown field", `{"servers": [{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "assertion"}, "token": "x"}]}`, nil, "unknown field"},
		{"a duplicate name", `{"servers": [{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "assertion"}},
			{"name": "a", "url": "https://b.example/mcp", "auth": {"type": "assertion"}}]}`, nil, "listed twice"},
		{"plain http", `{"servers": [{"name": "a", "url": "http://a.example/mcp", "auth": {"type": "assertion"}}]}`, nil, "must be https"},
		{"a shared credential", `{"servers": [{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "static"}}]}`, nil, "no shared credential"},
		{"a connection without providers", `{"servers": [{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "connection", "provider": "gh"}}]}`, nil, "IDFLOW_PROVIDERS_FILE"},
		{"an exchange of a connect provider", `{"servers": [{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "exchange", "provider": "gh"}}]}`,
			map[string]string{"IDFLOW_PROVIDERS_FILE": providers, "IDFLOW_VAULT_KEY": key}, "use auth type connection"},
	} {
		env := map[string]string{"IDFLOW_OIDC_ISSUER": iss.Issuer(), "IDFLOW_OIDC_AUDIENCE": iss.Audience(),
			"IDFLOW_DATA_DIR": t.TempDir(), "IDFLOW_LISTEN": "127.0.0.1:0",
			"IDFLOW_MCP_SERVERS_FILE": file(strings.ReplaceAll(c.name, " ", "-")+".json", c.body)}
		for k, v := range c.env {
			env[k] = v
		}
		_, _, err := runCmd(t, env, "serve")
		if err == nil || !strings.Contains(err.Error(), "IDFLOW_MCP_SERVERS_FILE") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error naming IDFLOW_MCP_SERVERS_FILE and %q", c.name, err, c.want)
		}
	}
	env := map[string]string{"IDFLOW_OIDC_ISSUER": iss.Issuer(), "IDFLOW_OIDC_AUDIENCE": iss.Audience(),
		"IDFLOW_DATA_DIR": t.TempDir(), "IDFLOW_LISTEN": "127.0.0.1:0", "IDFLOW_MCP_SERVERS_FILE": filepath.Join(dir, "missing.json")}
	if _, _, err := runCmd(t, env, "serve"); err == nil || !strings.Contains(err.Error(), "IDFLOW_MCP_SERVERS_FILE") {
		t.Errorf("a missing file: %v", err)
	}
}

// TestMCPServersTrustIdflowJWKS: idflow in production mode with a servers
// file naming the TypeScript downstream server, which verifies idflow's
// assertions with the keys idflow itself serves at
// /.well-known/idflow/jwks.json. The Source built from the same
// configuration lists and calls the downstream as the user.
func TestMCPServersTrustIdflowJWKS(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	public := "http://" + addr
	ds := testsvc.StartDownstreamMCP(t, public, public+"/.well-known/idflow/jwks.json")
	dir := t.TempDir()
	servers := filepath.Join(dir, "mcp-servers.json")
	writeFile(t, servers, fmt.Sprintf(`{"servers": [{"name": "tickets", "url": %q, "auth": {"type": "assertion"}}]}`, ds.URL))
	extra := map[string]string{"IDFLOW_LISTEN": addr, "IDFLOW_DATA_DIR": dir, "IDFLOW_MCP_SERVERS_FILE": servers}
	s := startProdIdflow(t, extra)

	// The same configuration as the running server: same data dir, so
	// the same assertion key.
	env := map[string]string{"IDFLOW_OIDC_ISSUER": s.Issuer.Issuer(), "IDFLOW_OIDC_AUDIENCE": s.Issuer.Audience()}
	for k, v := range extra {
		env[k] = v
	}
	cfg, _, err := loadConfig("serve", nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := assertionSigner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src, err := buildMCPServers(cfg, signer, downstreamParts{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	alice := authtest.User("alice", "t-one")
	ts, err := src.Tools(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range ts {
		if tl.Name != "tickets__whoami" {
			continue
		}
		v, err := tl.Run(t.Context(), alice, json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		who := v.(map[string]any)
		if who["sub"] != "alice" || who["iss"] != public || who["aud"] != ds.URL {
			t.Fatalf("the downstream saw %v", who)
		}
		return
	}
	t.Fatalf("no tickets__whoami among %d tools", len(ts))
}
