package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/testsvc"
)

// TestToolsRoute: GET /api/v1/tools lists the tools the caller may use —
// the built-ins and a downstream server's, each of those marked with its
// server — and a tool the policy file closes to the caller is not listed
// for them, while the role it opens to still sees it.
func TestToolsRoute(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	public := "http://" + addr
	ds := testsvc.StartDownstreamMCP(t, public, public+"/.well-known/idflow/jwks.json")
	dir := t.TempDir()
	servers := filepath.Join(dir, "mcp-servers.json")
	writeFile(t, servers, fmt.Sprintf(`{"servers": [{"name": "tickets", "url": %q, "auth": {"type": "assertion"}}]}`, ds.URL))
	policy := filepath.Join(dir, "policy.json")
	writeFile(t, policy, `{"features": {"tool.search_memory": {"roles": ["admin"]}, "tool.tickets__echo": {"roles": ["admin"]}}}`)
	s := startProdIdflow(t, map[string]string{"IDFLOW_LISTEN": addr, "IDFLOW_DATA_DIR": dir,
		"IDFLOW_MCP_SERVERS_FILE": servers, "IDFLOW_POLICY_FILE": policy})

	list := func(who string) map[string]idflow.ToolSpec {
		t.Helper()
		r := s.As(t, who, "GET", "/api/v1/tools", nil)
		mustStatus(t, r, http.StatusOK)
		var out struct {
			Items []idflow.ToolSpec `json:"items"`
		}
		r.JSON(t, &out)
		byName := map[string]idflow.ToolSpec{}
		var names []string
		for _, sp := range out.Items {
			names = append(names, sp.Name)
			byName[sp.Name] = sp
			var schema struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(sp.Parameters, &schema); err != nil || schema.Type != "object" {
				t.Errorf("%s: %s's parameters are not an object schema: %s", who, sp.Name, sp.Parameters)
			}
			downstream := strings.HasPrefix(sp.Name, "tickets__")
			if downstream != (sp.Server == "tickets") {
				t.Errorf("%s: tool %s has server %q", who, sp.Name, sp.Server)
			}
		}
		if !slices.IsSorted(names) {
			t.Errorf("%s: tools not sorted by name: %v", who, names)
		}
		return byName
	}

	alice := list(callerAlice)
	for _, name := range []string{"whoami", "add_fact", "send_message", "list_sessions", "tickets__whoami"} {
		if _, ok := alice[name]; !ok {
			t.Errorf("alice's tools lack %s: %v", name, slices.Sorted(maps.Keys(alice)))
		}
	}
	for _, name := range []string{"search_memory", "tickets__echo"} {
		if _, ok := alice[name]; ok {
			t.Errorf("alice sees %s, which the policy opens only to the admin role", name)
		}
	}
	if alice["whoami"].Description == "" || !alice["whoami"].ReadOnly {
		t.Errorf("whoami as listed: %+v", alice["whoami"])
	}
	admin := list(callerAdmin)
	for _, name := range []string{"search_memory", "tickets__echo", "whoami", "tickets__whoami"} {
		if _, ok := admin[name]; !ok {
			t.Errorf("the admin's tools lack %s: %v", name, slices.Sorted(maps.Keys(admin)))
		}
	}

	// An app-only token is no user: 403, nothing listed.
	r := s.As(t, callerApp, "GET", "/api/v1/tools", nil)
	mustStatus(t, r, http.StatusForbidden)
	if strings.Contains(string(r.Body), "whoami") {
		t.Fatalf("the app-only answer lists tools: %s", r)
	}
}
