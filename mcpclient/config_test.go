package mcpclient_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idflow/idflow/connections"
	"github.com/idflow/idflow/mcpclient"
)

func TestParse(t *testing.T) {
	cfg, err := mcpclient.Parse([]byte(`{"servers": [
		{"name": "tickets", "url": "https://tickets.internal/mcp", "auth": {"type": "assertion"}, "groups": ["engineering"]},
		{"name": "github",  "url": "https://gh-mcp.internal/mcp",  "auth": {"type": "connection", "provider": "github"}},
		{"name": "graph",   "url": "https://graph-mcp.internal/mcp", "auth": {"type": "exchange", "provider": "graph"}},
		{"name": "Local-1", "url": "http://127.0.0.1:9/mcp", "auth": {"type": "assertion"}},
		{"name": "local_6", "url": "http://[::1]:9/mcp", "auth": {"type": "assertion"}},
		{"name": "host", "url": "http://localhost:9/mcp", "auth": {"type": "assertion"}}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 6 || cfg.Servers[0].Groups[0] != "engineering" || cfg.Servers[1].Auth.Provider != "github" || cfg.Servers[1].Groups != nil {
		t.Fatalf("parsed %+v", cfg)
	}

	srv := func(fields string) string { return `{"servers": [{` + fields + `}]}` }
	ok := `"url": "https://a.example/mcp", "auth": {"type": "assertion"}`
	long := strings.Repeat("s", 62)
	for _, c := range []struct{ name, js, want string }{
		{"unknown field", srv(`"name": "a", ` + ok + `, "token": "shared"`), "unknown field"},
		{"unknown auth field", srv(`"name": "a", "url": "https://a.example/mcp", "auth": {"type": "assertion", "secret": "x"}`), "unknown field"},
		{"unknown top-level field", `{"server": []}`, "unknown field"},
		{"trailing", `{"servers": []} {}`, "trailing"},
		{"twice", `{"servers": [{"name": "a", ` + ok + `}, {"name": "a", ` + ok + `}]}`, "listed twice"},
		{"empty name", srv(`"name": "", ` + ok), "name"},
		{"bad name", srv(`"name": "a b", ` + ok), "letters, digits"},
		{"dotted name", srv(`"name": "a.b", ` + ok), "letters, digits"},
		{"separator in name", srv(`"name": "a__b", ` + ok), `"__"`},
		{"long name", srv(`"name": "` + long + `", ` + ok), "too long"},
		{"plain http", srv(`"name": "a", "url": "http://a.example/mcp", "auth": {"type": "assertion"}`), "https"},
		{"relative url", srv(`"name": "a", "url": "/mcp", "auth": {"type": "assertion"}`), "absolute"},
		{"credentials in url", srv(`"name": "a", "url": "https://u:p@a.example/mcp", "auth": {"type": "assertion"}`), "credentials"},
		{"fragment", srv(`"name": "a", "url": "https://a.example/mcp#x", "auth": {"type": "assertion"}`), "fragment"},
		{"no auth", srv(`"name": "a", "url": "https://a.example/mcp"`), "auth.type is required"},
		{"shared credential", srv(`"name": "a", "url": "https://a.example/mcp", "auth": {"type": "bearer"}`), "no shared credential"},
		{"assertion with provider", srv(`"name": "a", "url": "https://a.example/mcp", "auth": {"type": "assertion", "provider": "gh"}`), "takes no provider"},
		{"connection without provider", srv(`"name": "a", "url": "https://a.example/mcp", "auth": {"type": "connection"}`), "needs a provider"},
		{"exchange without provider", srv(`"name": "a", "url": "https://a.example/mcp", "auth": {"type": "exchange"}`), "needs a provider"},
		{"empty groups", srv(`"name": "a", ` + ok + `, "groups": []`), "omit it"},
		{"blank group", srv(`"name": "a", ` + ok + `, "groups": [""]`), "group"},
	} {
		if _, err := mcpclient.Parse([]byte(c.js)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error mentioning %q", c.name, err, c.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "servers.json")
	if err := os.WriteFile(good, []byte(`{"servers": [{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "assertion"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := mcpclient.Load(good); err != nil || len(cfg.Servers) != 1 {
		t.Fatalf("Load: %+v %v", cfg, err)
	}
	if _, err := mcpclient.Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("a missing file loaded")
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"servers": []}`+strings.Repeat(" ", 2<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mcpclient.Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a 2 MiB file: %v", err)
	}
}

// TestNewChecksProviders: a server's auth must match its provider's kind,
// and its credential source must exist.
func TestNewChecksProviders(t *testing.T) {
	te := newTokenEndpoint(t)
	mgr := connectionsManager(t, te, &clock{})
	for _, c := range []struct {
		name string
		srv  string
		deps mcpclient.Deps
		want string
	}{
		{"no signer", `{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "assertion"}}`, mcpclient.Deps{}, "signer"},
		{"no providers", `{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "connection", "provider": "gh"}}`, mcpclient.Deps{}, "IDFLOW_PROVIDERS_FILE"},
		{"unknown provider", `{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "connection", "provider": "nope"}}`, mcpclient.Deps{Connections: mgr}, "not in IDFLOW_PROVIDERS_FILE"},
		{"connection to an exchange provider", `{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "connection", "provider": "graph"}}`, mcpclient.Deps{Connections: mgr}, "use auth type exchange"},
		{"exchange of a connect provider", `{"name": "a", "url": "https://a.example/mcp", "auth": {"type": "exchange", "provider": "gh"}}`, mcpclient.Deps{Connections: mgr}, "use auth type connection"},
	} {
		cfg, err := mcpclient.Parse([]byte(`{"servers": [` + c.srv + `]}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mcpclient.New(cfg, c.deps); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error mentioning %q", c.name, err, c.want)
		}
	}
	var _ mcpclient.Connections = (*connections.Manager)(nil)
}
