package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// Every tool, in tools/list order.
var mcpAllTools = []string{"add_fact", "get_run", "ingest_document", "list_connections", "list_sessions",
	"search_memory", "send_message", "start_workflow", "whoami"}

type mcpWhoami struct {
	UserID     string   `json:"user_id"`
	Email      string   `json:"email"`
	Groups     []string `json:"groups"`
	Kind       string   `json:"kind"`
	AuthMethod string   `json:"auth_method"`
}

type mcpSent struct {
	SessionID string         `json:"session_id"`
	Message   idflow.Message `json:"message"`
	Reply     idflow.Message `json:"reply"`
}

type mcpScored struct {
	Items []idflow.ScoredFact `json:"items"`
}

// TestMCPToolsActAsTheTokenUser drives every tool through the go-sdk client
// as alice and as bob, against idflow in production mode, and checks that
// each result belongs to the token's user — whatever the arguments say.
func TestMCPToolsActAsTheTokenUser(t *testing.T) {
	t.Parallel()
	s := mcpStart(t, nil)
	alice, bob := s.token(t, "alice"), s.token(t, "bob")
	aliceID, bobID := mcpUserID("alice"), mcpUserID("bob")
	const aliceMarker, bobMarker = "zebracorn-alice-1d4e", "quokka-bob-77af"

	// Setup through the REST API: alice has a workflow, bob a secret fact.
	var wf idflow.Workflow
	mcpRESTJSON(t, "POST", s.URL+"/api/v1/workflows", alice, map[string]any{"name": "mcp flow", "definition": map[string]any{
		"steps": []any{map[string]any{"id": "ask", "type": "prompt", "prompt": "say " + aliceMarker}}}}, http.StatusCreated, &wf)
	var bobFact idflow.Fact
	mcpRESTJSON(t, "POST", s.URL+"/api/v1/facts", bob, map[string]any{"content": "bob's secret " + bobMarker}, http.StatusCreated, &bobFact)

	cs, aliceBearer := mcpConnect(t, s.URL, alice)
	if got := mcpToolNames(t, cs); !slices.Equal(got, mcpAllTools) {
		t.Fatalf("alice's tools/list: %v; want %v", got, mcpAllTools)
	}

	var who mcpWhoami
	mcpCall(t, cs, "whoami", nil).decode(t, &who)
	if who.UserID != aliceID || who.Kind != "user" || who.AuthMethod != "bearer" || who.Email != "alice@t-one.example" {
		t.Fatalf("whoami as alice: %+v", who)
	}

	// An argument naming another user is never obeyed: the fact is alice's.
	var fact idflow.Fact
	mcpCall(t, cs, "add_fact", map[string]any{"content": "alice knows " + aliceMarker, "user_id": bobID}).decode(t, &fact)
	if fact.UserID != aliceID {
		t.Fatalf("add_fact with user_id=bob as alice stored a fact of %q; want alice's", fact.UserID)
	}
	mcpCall(t, cs, "add_fact", map[string]any{"content": "more on " + aliceMarker, "owner": bobID, "onBehalfOf": bobID, "as": "bob"}).decode(t, &fact)
	if fact.UserID != aliceID {
		t.Fatalf("add_fact with owner/onBehalfOf/as as alice stored a fact of %q", fact.UserID)
	}
	var bobFacts idflow.List[idflow.Fact]
	mcpRESTJSON(t, "GET", s.URL+"/api/v1/facts?limit=200", bob, nil, http.StatusOK, &bobFacts)
	for _, f := range bobFacts.Items {
		if strings.Contains(f.Content, aliceMarker) {
			t.Fatalf("bob got alice's fact through MCP arguments: %+v", f)
		}
	}

	var found mcpScored
	mcpCall(t, cs, "search_memory", map[string]any{"query": aliceMarker, "limit": 50}).decode(t, &found)
	if len(found.Items) != 2 {
		t.Fatalf("search_memory %s as alice: %d items; want her 2 facts", aliceMarker, len(found.Items))
	}
	for _, it := range found.Items {
		if it.Fact.UserID != aliceID {
			t.Fatalf("search_memory as alice returned a fact of %q", it.Fact.UserID)
		}
	}
	mcpCall(t, cs, "search_memory", map[string]any{"query": bobMarker, "user_id": bobID}).decode(t, &found)
	if len(found.Items) != 0 {
		t.Fatalf("search_memory for bob's marker as alice found %+v", found.Items)
	}

	var sent mcpSent
	mcpCall(t, cs, "send_message", map[string]any{"content": "hello " + aliceMarker}).decode(t, &sent)
	if sent.SessionID == "" || sent.Message.UserID != aliceID || sent.Reply.UserID != aliceID || sent.Reply.Role != "assistant" {
		t.Fatalf("send_message as alice: %+v", sent)
	}
	mcpCall(t, cs, "send_message", map[string]any{"session_id": sent.SessionID, "content": "again", "userId": bobID}).decode(t, &sent)
	if sent.Message.UserID != aliceID || sent.Message.SessionID != sent.SessionID {
		t.Fatalf("second send_message as alice: %+v", sent)
	}

	var sessions idflow.List[idflow.ChatSession]
	mcpCall(t, cs, "list_sessions", map[string]any{"limit": 200}).decode(t, &sessions)
	if !slices.ContainsFunc(sessions.Items, func(c idflow.ChatSession) bool { return c.ID == sent.SessionID }) {
		t.Fatalf("list_sessions as alice lacks her session %s: %+v", sent.SessionID, sessions.Items)
	}
	for _, c := range sessions.Items {
		if c.UserID != aliceID {
			t.Fatalf("list_sessions as alice returned a session of %q", c.UserID)
		}
	}

	var doc idflow.Document
	mcpCall(t, cs, "ingest_document", map[string]any{"filename": "notes.txt", "content": "Notes on " + aliceMarker + ".", "user_id": bobID}).decode(t, &doc)
	if doc.UserID != aliceID || doc.FactCount < 1 {
		t.Fatalf("ingest_document as alice: %+v", doc)
	}

	var run idflow.Run
	mcpCall(t, cs, "start_workflow", map[string]any{"workflow_id": wf.ID, "input": map[string]any{"topic": aliceMarker}}).decode(t, &run)
	if run.UserID != aliceID || run.WorkflowID != wf.ID {
		t.Fatalf("start_workflow as alice: %+v", run)
	}
	run = mcpWaitRun(t, cs, run.ID)
	if run.Status != idflow.RunSucceeded || run.UserID != aliceID {
		t.Fatalf("alice's run ended %s (%s) owned by %q", run.Status, run.Error, run.UserID)
	}

	var conns struct{ Items []idflow.Connection }
	mcpCall(t, cs, "list_connections", nil).decode(t, &conns)
	if conns.Items == nil || len(conns.Items) != 0 {
		t.Fatalf("list_connections with no vault wired: %+v; want an empty list", conns)
	}

	// Every call was audited as tool.call, and the ignored identity
	// arguments as denials.
	events := mcpAuditOf(t, s.URL, alice)
	for _, name := range mcpAllTools {
		if !mcpHasAudit(events, "tool.call", idflow.OutcomeSuccess, "tool/"+name) {
			t.Errorf("no audit event tool.call tool/%s (success) for alice", name)
		}
	}
	if !mcpHasAudit(events, "tool.call", idflow.OutcomeDenied, "tool/add_fact/argument/user_id") {
		t.Errorf("the ignored user_id argument of add_fact was not audited as a denial")
	}

	t.Run("bob sees only bob's data", func(t *testing.T) {
		bcs, _ := mcpConnect(t, s.URL, bob)
		var who mcpWhoami
		mcpCall(t, bcs, "whoami", nil).decode(t, &who)
		if who.UserID != bobID {
			t.Fatalf("whoami as bob: %+v", who)
		}
		var found mcpScored
		mcpCall(t, bcs, "search_memory", map[string]any{"query": aliceMarker}).decode(t, &found)
		if len(found.Items) != 0 {
			t.Fatalf("bob's search_memory found alice's facts: %+v", found.Items)
		}
		mcpCall(t, bcs, "search_memory", map[string]any{"query": bobMarker}).decode(t, &found)
		if len(found.Items) != 1 || found.Items[0].Fact.ID != bobFact.ID {
			t.Fatalf("bob's search_memory for his own marker: %+v", found.Items)
		}
		var sessions idflow.List[idflow.ChatSession]
		mcpCall(t, bcs, "list_sessions", nil).decode(t, &sessions)
		for _, c := range sessions.Items {
			if c.UserID != bobID {
				t.Fatalf("bob's list_sessions returned a session of %q", c.UserID)
			}
		}
		// Alice's objects by id: the same not-found as a missing one.
		for _, c := range []struct {
			tool string
			args map[string]any
		}{
			{"get_run", map[string]any{"run_id": run.ID}},
			{"send_message", map[string]any{"session_id": sent.SessionID, "content": "let me in"}},
			{"start_workflow", map[string]any{"workflow_id": wf.ID}},
		} {
			res := mcpCall(t, bcs, c.tool, c.args)
			if !res.IsError || !strings.HasPrefix(res.Text, "not_found:") {
				t.Fatalf("%s on alice's object as bob: error %v, %q; want not_found", c.tool, res.IsError, res.Text)
			}
		}
		missing := mcpCall(t, bcs, "get_run", map[string]any{"run_id": "run_doesnotexist0000000000"})
		theirs := mcpCall(t, bcs, "get_run", map[string]any{"run_id": run.ID})
		if missing.Text != theirs.Text {
			t.Fatalf("alice's run answers %q, a missing one %q: they must be the same", theirs.Text, missing.Text)
		}
	})

	t.Run("another user's session id is refused", func(t *testing.T) {
		sid := mcpRawSession(t, s.URL, alice)
		whoami := mcpCallBody(t, "whoami", nil)
		for _, method := range []string{"POST", "GET", "DELETE"} {
			body := ""
			if method == "POST" {
				body = whoami
			}
			resp, b := mcpHTTP(t, method, s.URL, bob, sid, body)
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s with alice's session and bob's token: status %d, body %s; want 404", method, resp.StatusCode, b)
			}
		}
		// The same answer as a session that never existed.
		_, foreign := mcpHTTP(t, "POST", s.URL, bob, sid, whoami)
		_, unknown := mcpHTTP(t, "POST", s.URL, bob, "NOSUCHSESSION", whoami)
		if string(foreign) != string(unknown) {
			t.Fatalf("alice's session answers bob %s, an unknown one %s", foreign, unknown)
		}
		if !mcpHasAudit(mcpAuditOf(t, s.URL, bob), "mcp.session", idflow.OutcomeDenied, "mcp_session/") {
			t.Fatal("bob's use of alice's session was not audited")
		}
		// Alice's session survived, and a refreshed token of hers (another
		// jti, a later expiry) keeps it: it is bound to the user, not the token.
		refreshed := s.token(t, "alice", func(c authtest.Claims) authtest.Claims {
			return c.With("exp", time.Now().Add(2*time.Hour).Unix()).With("jti", "refreshed")
		})
		if refreshed == alice {
			t.Fatal("the refreshed token is the same token")
		}
		resp, b := mcpHTTP(t, "POST", s.URL, refreshed, sid, whoami)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("alice's session with her refreshed token: status %d, body %s", resp.StatusCode, b)
		}
		var who mcpWhoami
		if err := json.Unmarshal(mcpSSEResult(t, b).StructuredContent, &who); err != nil || who.UserID != aliceID {
			t.Fatalf("whoami on alice's session with her refreshed token: %+v (%v)", who, err)
		}
		if resp, b := mcpHTTP(t, "DELETE", s.URL, refreshed, sid, ""); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("alice ending her session: status %d, body %s", resp.StatusCode, b)
		}
		if resp, _ := mcpHTTP(t, "POST", s.URL, alice, sid, whoami); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("an ended session answered %d; want 404", resp.StatusCode)
		}

		// The go-sdk client of alice, its token swapped for bob's mid-session:
		// the call fails rather than run as anyone.
		acs, ab := mcpConnect(t, s.URL, alice)
		mcpCall(t, acs, "whoami", nil)
		ab.set(bob)
		if res, err := mcpTryCall(acs, "whoami", nil); err == nil {
			t.Fatalf("alice's session with bob's token answered a call: %+v", res)
		}
	})

	// alice's first client still works with a refreshed token.
	aliceBearer.set(s.token(t, "alice", func(c authtest.Claims) authtest.Claims { return c.With("jti", "second") }))
	mcpCall(t, cs, "whoami", nil).decode(t, &who)
	if who.UserID != aliceID {
		t.Fatalf("whoami after refresh: %+v", who)
	}
}

// mcpWaitRun polls get_run until the run ends.
func mcpWaitRun(t *testing.T, cs *sdk.ClientSession, runID string) idflow.Run {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	pause := 10 * time.Millisecond
	for {
		var run idflow.Run
		mcpCall(t, cs, "get_run", map[string]any{"run_id": runID}).decode(t, &run)
		if run.Terminal() {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s after 60s", runID, run.Status)
		}
		<-time.After(pause)
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// TestMCPAuthentication checks the resource-server side: the metadata, the
// 401 challenge, audiences and token kinds.
func TestMCPAuthentication(t *testing.T) {
	t.Parallel()
	s := mcpStart(t, nil)
	resource := s.URL + "/mcp"
	metadataURL := s.URL + "/.well-known/oauth-protected-resource/mcp"

	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		var meta struct {
			Resource               string   `json:"resource"`
			AuthorizationServers   []string `json:"authorization_servers"`
			ScopesSupported        []string `json:"scopes_supported"`
			BearerMethodsSupported []string `json:"bearer_methods_supported"`
		}
		mcpRESTJSON(t, "GET", s.URL+path, "", nil, http.StatusOK, &meta)
		if meta.Resource != resource || !slices.Equal(meta.AuthorizationServers, []string{s.Issuer.Issuer()}) ||
			!slices.Equal(meta.BearerMethodsSupported, []string{"header"}) || meta.ScopesSupported == nil {
			t.Fatalf("GET %s: %+v; want resource %s, authorization_servers [%s], bearer_methods_supported [header]", path, meta, resource, s.Issuer.Issuer())
		}
	}

	initBody := mcpInitialize
	challenge := func(t *testing.T, resp *http.Response) {
		t.Helper()
		h := resp.Header.Get("WWW-Authenticate")
		if !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, `resource_metadata="`+metadataURL+`"`) {
			t.Fatalf("WWW-Authenticate %q; want a Bearer challenge with resource_metadata=%q", h, metadataURL)
		}
	}

	t.Run("no token", func(t *testing.T) {
		for _, method := range []string{"POST", "GET", "DELETE"} {
			resp, b := mcpHTTP(t, method, s.URL, "", "", initBody)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s /mcp without a token: %d %s; want 401", method, resp.StatusCode, b)
			}
			challenge(t, resp)
		}
	})
	t.Run("app-only token", func(t *testing.T) {
		resp, b := mcpHTTP(t, "POST", s.URL, s.appToken(t), "", initBody)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("app-only token on /mcp: %d %s; want 403", resp.StatusCode, b)
		}
	})
	t.Run("another audience", func(t *testing.T) {
		tok := s.token(t, "alice", func(c authtest.Claims) authtest.Claims { return c.With("aud", "api://some-other-service") })
		resp, b := mcpHTTP(t, "POST", s.URL, tok, "", initBody)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a token for another audience on /mcp: %d %s; want 401", resp.StatusCode, b)
		}
		challenge(t, resp)
		if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("WWW-Authenticate %q; want error=\"invalid_token\"", resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("expired token", func(t *testing.T) {
		tok := s.token(t, "alice", func(c authtest.Claims) authtest.Claims {
			return c.With("iat", time.Now().Add(-2*time.Hour).Unix()).With("nbf", time.Now().Add(-2*time.Hour).Unix()).With("exp", time.Now().Add(-time.Hour).Unix())
		})
		if resp, b := mcpHTTP(t, "POST", s.URL, tok, "", initBody); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("an expired token on /mcp: %d %s; want 401", resp.StatusCode, b)
		}
	})
	t.Run("MCP audience", func(t *testing.T) {
		tok := s.token(t, "alice", func(c authtest.Claims) authtest.Claims { return c.With("aud", resource) })
		cs, _ := mcpConnect(t, s.URL, tok)
		var who mcpWhoami
		mcpCall(t, cs, "whoami", nil).decode(t, &who)
		if who.UserID != mcpUserID("alice") {
			t.Fatalf("whoami with an MCP-audience token: %+v", who)
		}
		// The same token cannot be replayed against the API.
		if status, b := mcpREST(t, "GET", s.URL+"/api/v1/me", tok, nil); status != http.StatusUnauthorized {
			t.Fatalf("an MCP-audience token on /api/v1/me: %d %s; want 401", status, b)
		}
		if status, _ := mcpREST(t, "GET", s.URL+"/api/v1/me", s.token(t, "alice"), nil); status != http.StatusOK {
			t.Fatalf("alice's API token on /api/v1/me: %d; want 200", status)
		}
	})
	t.Run("spoofed identity header", func(t *testing.T) {
		req, _ := http.NewRequest("POST", resource, strings.NewReader(initBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("X-Authenticated-User", mcpUserID("alice"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a spoofed identity header on /mcp: %d; want 401", resp.StatusCode)
		}
	})
}

// TestMCPPolicyFiltersTools gates send_message to the sales group: alice
// (engineering) neither sees nor may call it; bob (sales) may.
func TestMCPPolicyFiltersTools(t *testing.T) {
	t.Parallel()
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"features": {"mcp.tool.send_message": {"groups": ["sales"]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mcpStart(t, map[string]string{"IDFLOW_POLICY_FILE": policy})
	alice, bob := s.token(t, "alice"), s.token(t, "bob")

	acs, _ := mcpConnect(t, s.URL, alice)
	aliceTools := mcpToolNames(t, acs)
	if slices.Contains(aliceTools, "send_message") || !slices.Contains(aliceTools, "whoami") || len(aliceTools) != len(mcpAllTools)-1 {
		t.Fatalf("alice (engineering) sees %v; want every tool but send_message", aliceTools)
	}
	res := mcpCall(t, acs, "send_message", map[string]any{"content": "let me in"})
	if !res.IsError || !strings.Contains(res.Text, "mcp.tool.send_message") {
		t.Fatalf("alice calling the hidden send_message: error %v, %q; want a forbidden tool error", res.IsError, res.Text)
	}
	if !mcpHasAudit(mcpAuditOf(t, s.URL, alice), "tool.call", idflow.OutcomeDenied, "tool/send_message") {
		t.Fatal("alice's call of a filtered-out tool was not audited")
	}
	var sessions idflow.List[idflow.ChatSession]
	mcpRESTJSON(t, "GET", s.URL+"/api/v1/sessions", alice, nil, http.StatusOK, &sessions)
	if len(sessions.Items) != 0 {
		t.Fatalf("the refused send_message left sessions behind: %+v", sessions.Items)
	}

	bcs, _ := mcpConnect(t, s.URL, bob)
	if got := mcpToolNames(t, bcs); !slices.Equal(got, mcpAllTools) {
		t.Fatalf("bob (sales) sees %v; want %v", got, mcpAllTools)
	}
	var sent mcpSent
	mcpCall(t, bcs, "send_message", map[string]any{"content": "hi"}).decode(t, &sent)
	if sent.Message.UserID != mcpUserID("bob") {
		t.Fatalf("bob's send_message: %+v", sent)
	}
}

// TestMCPToolScopes requires a scope for add_fact: without it the call is
// refused at the HTTP level with an insufficient_scope challenge.
func TestMCPToolScopes(t *testing.T) {
	t.Parallel()
	s := mcpStart(t, map[string]string{"IDFLOW_MCP_TOOL_SCOPES": "add_fact:memory.write"})
	var meta struct {
		ScopesSupported []string `json:"scopes_supported"`
	}
	mcpRESTJSON(t, "GET", s.URL+"/.well-known/oauth-protected-resource/mcp", "", nil, http.StatusOK, &meta)
	if !slices.Contains(meta.ScopesSupported, "memory.write") {
		t.Fatalf("scopes_supported %v lacks the tool scope memory.write", meta.ScopesSupported)
	}

	alice := s.token(t, "alice") // scope "idflow" only
	sid := mcpRawSession(t, s.URL, alice)
	resp, b := mcpHTTP(t, "POST", s.URL, alice, sid, mcpCallBody(t, "add_fact", map[string]any{"content": "x"}))
	h := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="memory.write"`) {
		t.Fatalf("add_fact without memory.write: %d, WWW-Authenticate %q, body %s; want 403 insufficient_scope scope=\"memory.write\"", resp.StatusCode, h, b)
	}
	var facts idflow.List[idflow.Fact]
	mcpRESTJSON(t, "GET", s.URL+"/api/v1/facts", alice, nil, http.StatusOK, &facts)
	if len(facts.Items) != 0 {
		t.Fatalf("the refused add_fact stored %+v", facts.Items)
	}
	// Tools without a configured scope still work on the same session.
	resp, b = mcpHTTP(t, "POST", s.URL, alice, sid, mcpCallBody(t, "whoami", nil))
	if resp.StatusCode != http.StatusOK || mcpSSEResult(t, b).IsError {
		t.Fatalf("whoami without extra scopes: %d %s", resp.StatusCode, b)
	}
	// Step-up: a token with the scope, same user, same session.
	wider := s.token(t, "alice", func(c authtest.Claims) authtest.Claims { return c.With("scope", "idflow memory.write") })
	resp, b = mcpHTTP(t, "POST", s.URL, wider, sid, mcpCallBody(t, "add_fact", map[string]any{"content": "with scope"}))
	if resp.StatusCode != http.StatusOK || mcpSSEResult(t, b).IsError {
		t.Fatalf("add_fact with memory.write: %d %s", resp.StatusCode, b)
	}
}

// TestMCPStreamEndsWithItsToken opens the server-to-client SSE stream (GET
// /mcp) with a token that expires in two seconds: the server ends the
// stream when the token expires, so nothing reaches a client whose token
// is no longer valid; the client reconnects with a fresh one.
func TestMCPStreamEndsWithItsToken(t *testing.T) {
	t.Parallel()
	s := mcpStart(t, nil)
	alice := s.token(t, "alice")
	sid := mcpRawSession(t, s.URL, alice)
	exp := time.Now().Add(2 * time.Second)
	short := s.token(t, "alice", func(c authtest.Claims) authtest.Claims { return c.With("exp", exp.Unix()) })

	req, err := http.NewRequest("GET", s.URL+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+short)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /mcp: %d %s; want an SSE stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()
	select {
	case <-ended:
		if time.Now().Before(exp.Add(-time.Second)) {
			t.Fatalf("the stream ended at %s, long before its token expired at %s", time.Now().Format(time.RFC3339Nano), exp.Format(time.RFC3339Nano))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the SSE stream outlived its token by 18s")
	}
	// The session itself lives on for a valid token.
	if resp, b := mcpHTTP(t, "POST", s.URL, alice, sid, mcpCallBody(t, "whoami", nil)); resp.StatusCode != http.StatusOK {
		t.Fatalf("whoami after the stream ended: %d %s", resp.StatusCode, b)
	}
}
