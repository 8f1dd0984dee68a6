package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/testsvc"
)

// tsClientOutput is what testdata/mcpclient/client.mjs prints.
type tsClientOutput struct {
	Session bool     `json:"session"`
	Tools   []string `json:"tools"`
	Calls   map[string]struct {
		IsError    bool            `json:"isError"`
		Structured json.RawMessage `json:"structured"`
		Text       string          `json:"text"`
	} `json:"calls"`
}

// decode decodes the structured result of tool into v.
func (o tsClientOutput) decode(t *testing.T, tool string, v any) {
	t.Helper()
	c, ok := o.Calls[tool]
	if !ok {
		t.Fatalf("the TypeScript client did not call %s", tool)
	}
	if c.IsError {
		t.Fatalf("%s through the TypeScript client: tool error %s", tool, c.Text)
	}
	if err := json.Unmarshal(c.Structured, v); err != nil {
		t.Fatalf("%s through the TypeScript client: %v: %s", tool, err, c.Structured)
	}
}

// runTSClient runs the TypeScript SDK client as the holder of token.
func runTSClient(t *testing.T, node, dir, url, token, marker, victim string) tsClientOutput {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "client.mjs"), url, marker, victim)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "IDFLOW_MCP_TOKEN="+token)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, stderr.String())
	}
	var o tsClientOutput
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatalf("client.mjs printed %q: %v", out, err)
	}
	return o
}

// TestMCPTypeScriptClient connects the official TypeScript MCP SDK (from
// npm, pinned in testdata/mcpclient/package-lock.json), an implementation
// that shares no code with idflow or the go-sdk, as alice and as bob.
func TestMCPTypeScriptClient(t *testing.T) {
	t.Parallel()
	node := testsvc.Node(t)
	dir := testsvc.RepoDir(t, "testdata/mcpclient")
	testsvc.NPMInstall(t, dir)

	s := mcpStart(t, nil)
	aliceID, bobID := mcpUserID("alice"), mcpUserID("bob")
	// Both use the same marker: each search must find only its user's fact.
	const marker = "tsclient-narwhal-5e21"

	check := func(t *testing.T, who, victim string) tsClientOutput {
		t.Helper()
		userID := mcpUserID(who)
		o := runTSClient(t, node, dir, s.URL+"/mcp", s.token(t, who), marker, victim)
		if !o.Session {
			t.Fatalf("%s: the TypeScript client got no Mcp-Session-Id", who)
		}
		if !slices.Equal(o.Tools, mcpAllTools) {
			t.Fatalf("%s: tools/list %v; want %v", who, o.Tools, mcpAllTools)
		}
		var whoami mcpWhoami
		o.decode(t, "whoami", &whoami)
		if whoami.UserID != userID {
			t.Fatalf("%s: whoami %+v", who, whoami)
		}
		var fact idflow.Fact
		o.decode(t, "add_fact", &fact)
		if fact.UserID != userID {
			t.Fatalf("%s: add_fact with user_id=%s stored a fact of %q", who, victim, fact.UserID)
		}
		var found mcpScored
		o.decode(t, "search_memory", &found)
		if len(found.Items) != 1 || found.Items[0].Fact.ID != fact.ID {
			t.Fatalf("%s: search_memory %q found %+v; want only the fact %s", who, marker, found.Items, fact.ID)
		}
		var sent mcpSent
		o.decode(t, "send_message", &sent)
		if sent.Message.UserID != userID || sent.Reply.UserID != userID {
			t.Fatalf("%s: send_message %+v", who, sent)
		}
		var sessions idflow.List[idflow.ChatSession]
		o.decode(t, "list_sessions", &sessions)
		if len(sessions.Items) != 1 || sessions.Items[0].ID != sent.SessionID || sessions.Items[0].UserID != userID {
			t.Fatalf("%s: list_sessions %+v; want only the session %s", who, sessions.Items, sent.SessionID)
		}
		var conns struct{ Items []idflow.Connection }
		o.decode(t, "list_connections", &conns)
		if conns.Items == nil {
			t.Fatalf("%s: list_connections answered no items list", who)
		}
		return o
	}
	check(t, "alice", bobID)
	check(t, "bob", aliceID)

	// Seen from the REST API: each fact landed with its token's user.
	for _, who := range []string{"alice", "bob"} {
		var facts idflow.List[idflow.Fact]
		mcpRESTJSON(t, "GET", s.URL+"/api/v1/facts", s.token(t, who), nil, 200, &facts)
		if len(facts.Items) != 1 || facts.Items[0].UserID != mcpUserID(who) {
			t.Fatalf("%s's facts after both clients ran: %+v", who, facts.Items)
		}
	}
}
