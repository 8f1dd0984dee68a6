package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// TestMCPToolsComeFromTheCatalog: /mcp lists the catalog's tools for the
// caller — each with its JSON Schema and annotations — and the policy
// feature tool.<name> (the name every channel shares) hides a tool from
// whoever it closes it to and refuses it if called anyway; identity
// arguments are removed at any depth and the removal audited.
func TestMCPToolsComeFromTheCatalog(t *testing.T) {
	t.Parallel()
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"features": {"tool.add_fact": {"groups": ["sales"]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mcpStart(t, map[string]string{"IDFLOW_POLICY_FILE": policy})
	alice, bob := s.token(t, "alice"), s.token(t, "bob")

	bcs, _ := mcpConnect(t, s.URL, bob)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := bcs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if list.CacheScope != "private" {
		t.Fatalf("tools/list cacheScope %q; want private", list.CacheScope)
	}
	byName := map[string]map[string]any{}
	for _, tool := range list.Tools {
		var schema map[string]any
		b, _ := json.Marshal(tool.InputSchema)
		if err := json.Unmarshal(b, &schema); err != nil || schema["type"] != "object" || schema["properties"] == nil {
			t.Fatalf("%s: inputSchema %s", tool.Name, b)
		}
		if tool.Annotations == nil || tool.Annotations.OpenWorldHint == nil || *tool.Annotations.OpenWorldHint || tool.Description == "" {
			t.Fatalf("%s: annotations %+v, description %q", tool.Name, tool.Annotations, tool.Description)
		}
		if want := slices.Contains([]string{"whoami", "list_sessions", "search_memory", "get_run", "list_connections"}, tool.Name); tool.Annotations.ReadOnlyHint != want {
			t.Fatalf("%s: readOnlyHint %v; want %v", tool.Name, tool.Annotations.ReadOnlyHint, want)
		}
		byName[tool.Name] = schema
	}
	search := byName["search_memory"]
	if req, _ := search["required"].([]any); len(req) != 1 || req[0] != "query" {
		t.Fatalf("search_memory's schema: %v", search)
	}
	if props, _ := search["properties"].(map[string]any); props["limit"].(map[string]any)["maximum"] != float64(50) {
		t.Fatalf("search_memory's limit: %v", props["limit"])
	}
	if got := mcpToolNames(t, bcs); !slices.Equal(got, mcpAllTools) {
		t.Fatalf("bob (sales) sees %v; want %v", got, mcpAllTools)
	}
	// A schema violation is a tool error the client can read; nothing runs.
	res := mcpCall(t, bcs, "search_memory", map[string]any{"query": "x", "limit": 500})
	if !res.IsError || !strings.HasPrefix(res.Text, "invalid: ") || !strings.Contains(res.Text, "limit") {
		t.Fatalf("search_memory with limit 500: %v %q", res.IsError, res.Text)
	}

	acs, _ := mcpConnect(t, s.URL, alice)
	if got := mcpToolNames(t, acs); slices.Contains(got, "add_fact") || len(got) != len(mcpAllTools)-1 {
		t.Fatalf("alice (engineering) sees %v; want every tool but add_fact", got)
	}
	res = mcpCall(t, acs, "add_fact", map[string]any{"content": "let me in"})
	if !res.IsError || !strings.Contains(res.Text, "tool.add_fact") {
		t.Fatalf("alice calling the hidden add_fact: %v %q", res.IsError, res.Text)
	}
	var facts idflow.List[idflow.Fact]
	mcpRESTJSON(t, "GET", s.URL+"/api/v1/facts", alice, nil, 200, &facts)
	if len(facts.Items) != 0 {
		t.Fatalf("the refused add_fact stored %+v", facts.Items)
	}

	// Nested and re-spelled identity arguments: the run is bob's own.
	var wf idflow.Workflow
	mcpRESTJSON(t, "POST", s.URL+"/api/v1/workflows", bob, map[string]any{"name": "w", "definition": map[string]any{
		"steps": []any{map[string]any{"id": "who", "type": "tool", "tool": "whoami"}}}}, 201, &wf)
	var run idflow.Run
	mcpCall(t, bcs, "start_workflow", map[string]any{"workflow_id": wf.ID, "OWNER_ID": mcpUserID("alice"),
		"input": map[string]any{"on_behalf_of": mcpUserID("alice"), "topic": "t"}}).decode(t, &run)
	if run.UserID != mcpUserID("bob") || string(run.Input) != `{"topic":"t"}` {
		t.Fatalf("start_workflow with identity arguments: owner %q, input %s", run.UserID, run.Input)
	}

	aliceEvents, bobEvents := mcpAuditOf(t, s.URL, alice), mcpAuditOf(t, s.URL, bob)
	if !mcpHasAudit(aliceEvents, "tool.call", idflow.OutcomeDenied, "tool/add_fact") {
		t.Fatal("alice's refused add_fact was not audited")
	}
	for _, arg := range []string{"tool/start_workflow/argument/OWNER_ID", "tool/start_workflow/argument/input/on_behalf_of"} {
		if !mcpHasAudit(bobEvents, "tool.call", idflow.OutcomeDenied, arg) {
			t.Fatalf("the removal of %s was not audited", arg)
		}
	}
	if !slices.ContainsFunc(bobEvents, func(e mcpAudit) bool {
		return e.Action == "tool.call" && e.Resource == "tool/start_workflow" && e.Outcome == idflow.OutcomeSuccess
	}) {
		t.Fatal("bob's start_workflow was not audited")
	}
}
