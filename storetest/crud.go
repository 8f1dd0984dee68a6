package storetest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/idflow/idflow"
)

func testApps(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	// The caller cannot choose the id, the owner or the timestamps.
	a := must(s.CreateApp(ctx, alice, idflow.App{ID: "app_chosen", UserID: "bob", Name: "notes", Description: "my notes"}))(t)
	checkNew(t, "app", a.ID, idflow.PrefixApp, a.UserID, alice.UserID)
	if a.Name != "notes" || a.Description != "my notes" || a.CreatedAt.IsZero() || !a.UpdatedAt.Equal(a.CreatedAt) {
		t.Fatalf("created app = %+v", a)
	}
	sameJSON(t, must(s.GetApp(ctx, alice, a.ID))(t), a)
	_, err := s.GetApp(ctx, bob, a.ID)
	wantNotFound(t, err, "app")

	// Patch: a nil field is unchanged, a pointer to "" clears.
	u := must(s.UpdateApp(ctx, alice, a.ID, idflow.AppPatch{Name: ptr("journal")}))(t)
	if u.Name != "journal" || u.Description != "my notes" || u.UpdatedAt.Before(a.UpdatedAt) || !u.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("after name patch: %+v", u)
	}
	u = must(s.UpdateApp(ctx, alice, a.ID, idflow.AppPatch{Description: ptr("")}))(t)
	if u.Name != "journal" || u.Description != "" {
		t.Fatalf("after description patch: %+v", u)
	}
	u = must(s.UpdateApp(ctx, alice, a.ID, idflow.AppPatch{}))(t)
	if u.Name != "journal" || u.Description != "" {
		t.Fatalf("after empty patch: %+v", u)
	}
	sameJSON(t, must(s.GetApp(ctx, alice, a.ID))(t), u)
	if got := must(s.ListApps(ctx, alice, idflow.Page{}))(t); len(got.Items) != 1 || got.Items[0].ID != a.ID {
		t.Fatalf("ListApps = %+v", got)
	}

	ok(t, s.DeleteApp(ctx, alice, a.ID))
	_, err = s.GetApp(ctx, alice, a.ID)
	wantNotFound(t, err, "app")
	wantNotFound(t, s.DeleteApp(ctx, alice, a.ID), "app")
	_, err = s.UpdateApp(ctx, alice, a.ID, idflow.AppPatch{Name: ptr("x")})
	wantNotFound(t, err, "app")
	if got := must(s.ListApps(ctx, alice, idflow.Page{}))(t); got.Items == nil || len(got.Items) != 0 {
		t.Fatalf("ListApps after delete = %#v, want an empty, non-nil list", got)
	}
}

func testAgents(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	a := must(s.CreateAgent(ctx, alice, idflow.Agent{Name: "helper", Instructions: "be brief", Model: "echo",
		Tools: []string{"search", "calendar"}}))(t)
	checkNew(t, "agent", a.ID, idflow.PrefixAgent, a.UserID, alice.UserID)
	if a.Name != "helper" || a.Instructions != "be brief" || a.Model != "echo" || !slices.Equal(a.Tools, []string{"search", "calendar"}) {
		t.Fatalf("created agent = %+v", a)
	}
	sameJSON(t, must(s.GetAgent(ctx, alice, a.ID))(t), a)

	u := must(s.UpdateAgent(ctx, alice, a.ID, idflow.AgentPatch{Model: ptr("gpt")}))(t)
	if u.Name != "helper" || u.Instructions != "be brief" || u.Model != "gpt" || !slices.Equal(u.Tools, a.Tools) {
		t.Fatalf("after model patch: %+v", u)
	}
	u = must(s.UpdateAgent(ctx, alice, a.ID, idflow.AgentPatch{Tools: &[]string{}}))(t)
	if u.Tools == nil || len(u.Tools) != 0 || u.Model != "gpt" {
		t.Fatalf("after tools patch: %#v", u)
	}
	sameJSON(t, must(s.GetAgent(ctx, alice, a.ID))(t), u)

	// No tools reads back as [], never null, however it was given.
	b := must(s.CreateAgent(ctx, alice, idflow.Agent{Name: "bare"}))(t)
	if got := must(s.GetAgent(ctx, alice, b.ID))(t); got.Tools == nil || b.Tools == nil {
		t.Fatalf("agent without tools: created %#v, read %#v; want non-nil Tools", b.Tools, got.Tools)
	}
	var none []string
	if got := must(s.UpdateAgent(ctx, alice, b.ID, idflow.AgentPatch{Tools: &none}))(t); got.Tools == nil {
		t.Fatalf("agent patched with nil tools: %#v; want non-nil Tools", got.Tools)
	}
	if got := must(s.ListAgents(ctx, alice, idflow.Page{}))(t); !slices.Equal(ids(got.Items, agentID), []string{b.ID, a.ID}) {
		t.Fatalf("ListAgents = %v, want newest first", ids(got.Items, agentID))
	}

	ok(t, s.DeleteAgent(ctx, alice, a.ID))
	_, err := s.GetAgent(ctx, alice, a.ID)
	wantNotFound(t, err, "agent")
	wantNotFound(t, s.DeleteAgent(ctx, alice, a.ID), "agent")
	_, err = s.UpdateAgent(ctx, alice, a.ID, idflow.AgentPatch{})
	wantNotFound(t, err, "agent")
}

func testSessions(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	app := must(s.CreateApp(ctx, alice, idflow.App{Name: "app"}))(t)
	agent := must(s.CreateAgent(ctx, alice, idflow.Agent{Name: "agent"}))(t)

	plain := must(s.CreateSession(ctx, alice, idflow.ChatSession{Title: "plain"}))(t)
	checkNew(t, "session", plain.ID, idflow.PrefixSession, plain.UserID, alice.UserID)
	linked := must(s.CreateSession(ctx, alice, idflow.ChatSession{Title: "linked", AppID: app.ID, AgentID: agent.ID}))(t)
	if linked.AppID != app.ID || linked.AgentID != agent.ID || linked.Title != "linked" {
		t.Fatalf("created session = %+v", linked)
	}
	sameJSON(t, must(s.GetSession(ctx, alice, linked.ID))(t), linked)

	// Unknown references are not found, and nothing is created.
	_, err := s.CreateSession(ctx, alice, idflow.ChatSession{AppID: idflow.NewID(idflow.PrefixApp)})
	wantNotFound(t, err, "app")
	_, err = s.CreateSession(ctx, alice, idflow.ChatSession{AgentID: idflow.NewID(idflow.PrefixAgent)})
	wantNotFound(t, err, "agent")

	all := must(s.ListSessions(ctx, alice, idflow.SessionFilter{}, idflow.Page{}))(t)
	if !slices.Equal(ids(all.Items, sessionID), []string{linked.ID, plain.ID}) {
		t.Fatalf("ListSessions = %v", ids(all.Items, sessionID))
	}
	byApp := must(s.ListSessions(ctx, alice, idflow.SessionFilter{AppID: app.ID}, idflow.Page{}))(t)
	if !slices.Equal(ids(byApp.Items, sessionID), []string{linked.ID}) {
		t.Fatalf("ListSessions(app) = %v", ids(byApp.Items, sessionID))
	}

	// Patch: nil is unchanged, "" clears a reference, an id must be the caller's.
	u := must(s.UpdateSession(ctx, alice, linked.ID, idflow.SessionPatch{Title: ptr("renamed")}))(t)
	if u.Title != "renamed" || u.AppID != app.ID || u.AgentID != agent.ID {
		t.Fatalf("after title patch: %+v", u)
	}
	u = must(s.UpdateSession(ctx, alice, linked.ID, idflow.SessionPatch{AppID: ptr("")}))(t)
	if u.Title != "renamed" || u.AppID != "" || u.AgentID != agent.ID {
		t.Fatalf("after clearing app: %+v", u)
	}
	_, err = s.UpdateSession(ctx, alice, linked.ID, idflow.SessionPatch{AgentID: ptr(idflow.NewID(idflow.PrefixAgent))})
	wantNotFound(t, err, "agent")
	u = must(s.UpdateSession(ctx, alice, plain.ID, idflow.SessionPatch{AppID: &app.ID}))(t)
	if u.AppID != app.ID || u.Title != "plain" {
		t.Fatalf("after setting app: %+v", u)
	}
	sameJSON(t, must(s.GetSession(ctx, alice, plain.ID))(t), u)

	// Deleting an app or agent keeps the sessions, with the reference cleared.
	ok(t, s.DeleteApp(ctx, alice, app.ID))
	ok(t, s.DeleteAgent(ctx, alice, agent.ID))
	for _, id := range []string{plain.ID, linked.ID} {
		if got := must(s.GetSession(ctx, alice, id))(t); got.AppID != "" || got.AgentID != "" {
			t.Fatalf("session %s after deleting its app and agent: %+v", id, got)
		}
	}

	ok(t, s.DeleteSession(ctx, alice, plain.ID))
	_, err = s.GetSession(ctx, alice, plain.ID)
	wantNotFound(t, err, "session")
	wantNotFound(t, s.DeleteSession(ctx, alice, plain.ID), "session")
	_, err = s.UpdateSession(ctx, alice, plain.ID, idflow.SessionPatch{})
	wantNotFound(t, err, "session")
}

func testMessages(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	ses := must(s.CreateSession(ctx, alice, idflow.ChatSession{Title: "chat"}))(t)
	got := must(s.AddMessages(ctx, alice, ses.ID,
		idflow.Message{Role: "user", Content: "one"},
		idflow.Message{Role: "assistant", Content: "two"},
		idflow.Message{Role: "user", Content: "three", UserID: "bob", SessionID: "ses_other"}))(t)
	if len(got) != 3 {
		t.Fatalf("AddMessages returned %d messages", len(got))
	}
	for i, m := range got {
		checkNew(t, "message", m.ID, idflow.PrefixMessage, m.UserID, alice.UserID)
		if m.SessionID != ses.ID || m.Content != []string{"one", "two", "three"}[i] || m.CreatedAt.IsZero() {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	more := must(s.AddMessages(ctx, alice, ses.ID, idflow.Message{Role: "assistant", Content: "four"}))(t)
	all := must(s.ListMessages(ctx, alice, ses.ID, idflow.Page{}))(t)
	sameJSON(t, all.Items, append(got, more...)) // oldest first, in the order added
	if after := must(s.GetSession(ctx, alice, ses.ID))(t); after.UpdatedAt.Before(more[0].CreatedAt) {
		t.Errorf("session updated_at %v is before its last message %v", after.UpdatedAt, more[0].CreatedAt)
	}

	_, err := s.AddMessages(ctx, alice, idflow.NewID(idflow.PrefixSession), idflow.Message{Role: "user", Content: "x"})
	wantNotFound(t, err, "session")
	_, err = s.ListMessages(ctx, alice, idflow.NewID(idflow.PrefixSession), idflow.Page{})
	wantNotFound(t, err, "session")
	_, err = s.RecentMessages(ctx, alice, idflow.NewID(idflow.PrefixSession), 10)
	wantNotFound(t, err, "session")

	// Deleting the session deletes its messages.
	other := must(s.CreateSession(ctx, alice, idflow.ChatSession{Title: "other"}))(t)
	must(s.AddMessages(ctx, alice, other.ID, idflow.Message{Role: "user", Content: "stays"}))(t)
	ok(t, s.DeleteSession(ctx, alice, ses.ID))
	_, err = s.ListMessages(ctx, alice, ses.ID, idflow.Page{})
	wantNotFound(t, err, "session")
	if st := must(s.Stats(ctx))(t); st.Messages != 1 {
		t.Fatalf("Stats.Messages after deleting a session = %d, want 1", st.Messages)
	}
	testAgentTurnMessages(t, s)
}

// testAgentTurnMessages: the messages of an agent turn keep their tool
// calls and the ids the turn made for them, and RecentMessages answers the
// newest of them, oldest first.
func testAgentTurnMessages(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	ses := must(s.CreateSession(ctx, alice, idflow.ChatSession{Title: "agent"}))(t)
	userID := idflow.NewID(idflow.PrefixMessage)
	args := json.RawMessage(`{"query":"zebra","limit":2,"a":[1]}`) // kept as sent, in its order
	turn := []idflow.Message{
		{ID: userID, Role: "user", Content: "find zebras"},
		{ID: "msg_chosen-by-a-client", Role: "assistant", Content: "let me look",
			ToolCalls: []idflow.ToolCall{{ID: "call_1", Name: "search_memory", Arguments: args}, {ID: "call_2", Name: "whoami", Arguments: json.RawMessage(`{}`)}}},
		{Role: "tool", ToolCallID: "call_1", Name: "search_memory", Content: `{"items":[]}`},
		{Role: "tool", ToolCallID: "call_2", Name: "whoami", Content: `{"user_id":"alice"}`},
		{Role: "assistant", Content: "no zebras"},
	}
	got := must(s.AddMessages(ctx, alice, ses.ID, turn...))(t)
	if got[0].ID != userID {
		t.Fatalf("the turn's own message id %s became %s", userID, got[0].ID)
	}
	if got[1].ID == "msg_chosen-by-a-client" || !idflow.IsNewID(idflow.PrefixMessage, got[1].ID) {
		t.Fatalf("an id that NewID did not make was kept: %s", got[1].ID)
	}
	for i, m := range got {
		want := turn[i]
		want.ID, want.UserID, want.SessionID, want.CreatedAt, want.UpdatedAt = m.ID, alice.UserID, ses.ID, m.CreatedAt, m.UpdatedAt
		sameJSON(t, m, want)
	}
	all := must(s.ListMessages(ctx, alice, ses.ID, idflow.Page{}))(t)
	sameJSON(t, all.Items, got)
	if a := string(all.Items[1].ToolCalls[0].Arguments); a != string(args) {
		t.Fatalf("stored arguments %s; want them as sent, %s", a, args)
	}
	// A duplicate id is refused, and nothing of that call is stored.
	_, err := s.AddMessages(ctx, alice, ses.ID, idflow.Message{Role: "user", Content: "again"}, idflow.Message{ID: userID, Role: "assistant", Content: "dup"})
	if err == nil {
		t.Fatal("a message id used twice was accepted")
	}
	// Arguments that are not JSON are refused, not stored broken.
	_, err = s.AddMessages(ctx, alice, ses.ID, idflow.Message{Role: "assistant",
		ToolCalls: []idflow.ToolCall{{ID: "c", Name: "whoami", Arguments: json.RawMessage(`{not json`)}}})
	wantCode(t, err, idflow.EINVALID)

	recent := must(s.RecentMessages(ctx, alice, ses.ID, 3))(t)
	sameJSON(t, recent, got[2:])
	recent = must(s.RecentMessages(ctx, alice, ses.ID, idflow.MaxRecentMessages))(t)
	sameJSON(t, recent, got)
	for _, limit := range []int{0, -1, idflow.MaxRecentMessages + 1} {
		_, err := s.RecentMessages(ctx, alice, ses.ID, limit)
		wantCode(t, err, idflow.EINVALID)
	}
	// bob sees none of it, and cannot tell the session exists.
	_, err = s.RecentMessages(ctx, bob, ses.ID, 10)
	wantNotFound(t, err, "session")
}

func testWorkflows(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	v1 := idflow.Definition{Steps: []idflow.Step{{ID: "a", Type: idflow.StepPrompt, Prompt: "summarise"},
		{ID: "b", Type: idflow.StepTool, Tool: "http", Args: json.RawMessage(`{"url":"https://example.test"}`)}}}
	v2 := idflow.Definition{Steps: []idflow.Step{{ID: "w", Type: idflow.StepWait, Ms: 5}}}

	w := must(s.CreateWorkflow(ctx, alice, idflow.Workflow{Name: "digest", Definition: v1,
		Status: idflow.WorkflowPublished, Version: 9}))(t)
	checkNew(t, "workflow", w.ID, idflow.PrefixWorkflow, w.UserID, alice.UserID)
	if w.Status != idflow.WorkflowDraft || w.Version != 0 || w.PublishedAt != nil || w.Name != "digest" {
		t.Fatalf("created workflow = %+v", w)
	}
	sameJSON(t, w.Definition, v1)
	sameJSON(t, must(s.GetWorkflow(ctx, alice, w.ID))(t), w)
	sameJSON(t, must(s.GetWorkflowVersion(ctx, alice, w.ID, 0))(t), v1)
	_, err := s.GetWorkflowVersion(ctx, alice, w.ID, 1)
	wantNotFound(t, err, "workflow")
	_, err = s.GetWorkflowVersion(ctx, alice, w.ID, -1)
	wantCode(t, err, idflow.EINVALID)

	p1 := must(s.PublishWorkflow(ctx, alice, w.ID))(t)
	if p1.Status != idflow.WorkflowPublished || p1.Version != 1 || p1.PublishedAt == nil {
		t.Fatalf("after first publish: %+v", p1)
	}
	wantUTC(t, "published_at", *p1.PublishedAt, *must(s.GetWorkflow(ctx, alice, w.ID))(t).PublishedAt)
	r := must(s.ReplaceWorkflow(ctx, alice, w.ID, "digest v2", v2))(t)
	if r.Name != "digest v2" || r.Version != 1 || r.Status != idflow.WorkflowPublished {
		t.Fatalf("after replace: %+v", r)
	}
	sameJSON(t, r.Definition, v2)
	sameJSON(t, must(s.GetWorkflowVersion(ctx, alice, w.ID, 1))(t), v1) // frozen
	sameJSON(t, must(s.GetWorkflowVersion(ctx, alice, w.ID, 0))(t), v2) // the draft

	p2 := must(s.PublishWorkflow(ctx, alice, w.ID))(t)
	if p2.Version != 2 || p2.PublishedAt == nil || p2.PublishedAt.Before(*p1.PublishedAt) {
		t.Fatalf("after second publish: %+v", p2)
	}
	sameJSON(t, must(s.GetWorkflowVersion(ctx, alice, w.ID, 2))(t), v2)
	sameJSON(t, must(s.GetWorkflow(ctx, alice, w.ID))(t), p2)

	// An empty definition reads back with steps [], never null.
	e := must(s.CreateWorkflow(ctx, alice, idflow.Workflow{Name: "empty"}))(t)
	if e.Definition.Steps == nil || must(s.GetWorkflow(ctx, alice, e.ID))(t).Definition.Steps == nil {
		t.Fatalf("empty workflow definition has nil steps")
	}
	_, err = s.CreateWorkflow(ctx, alice, idflow.Workflow{Name: "bad", Definition: idflow.Definition{
		Steps: []idflow.Step{{ID: "x", Type: idflow.StepTool, Args: json.RawMessage(`{not json`)}}}})
	wantCode(t, err, idflow.EINVALID)

	if got := must(s.ListWorkflows(ctx, alice, idflow.Page{}))(t); !slices.Equal(ids(got.Items, workflowID), []string{e.ID, w.ID}) {
		t.Fatalf("ListWorkflows = %v", ids(got.Items, workflowID))
	}

	ok(t, s.DeleteWorkflow(ctx, alice, w.ID))
	_, err = s.GetWorkflow(ctx, alice, w.ID)
	wantNotFound(t, err, "workflow")
	_, err = s.GetWorkflowVersion(ctx, alice, w.ID, 1)
	wantNotFound(t, err, "workflow")
	_, err = s.PublishWorkflow(ctx, alice, w.ID)
	wantNotFound(t, err, "workflow")
	_, err = s.ReplaceWorkflow(ctx, alice, w.ID, "x", v1)
	wantNotFound(t, err, "workflow")
	wantNotFound(t, s.DeleteWorkflow(ctx, alice, w.ID), "workflow")
}

func testUsers(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	ok(t, s.TouchUser(ctx, alice))
	first := must(s.AdminListUsers(ctx, root, scopeOf(t, root), idflow.Page{}))(t)
	ok(t, s.TouchUser(ctx, alice))
	ok(t, s.TouchUser(ctx, carol))
	got := must(s.AdminListUsers(ctx, root, scopeOf(t, root), idflow.Page{}))(t)
	if len(got.Items) != 2 {
		t.Fatalf("AdminListUsers = %+v, want alice and carol once each", got.Items)
	}
	var a idflow.User
	for _, u := range got.Items {
		if u.UserID == alice.UserID {
			a = u
		}
	}
	if a.TenantID != "t-one" || a.Email != alice.Email || a.Name != alice.Name || a.Issuer != alice.Issuer {
		t.Fatalf("alice = %+v", a)
	}
	if !a.FirstSeen.Equal(first.Items[0].FirstSeen) || !a.LastSeen.After(first.Items[0].LastSeen) {
		t.Fatalf("second touch: first_seen %v -> %v, last_seen %v -> %v; want first kept, last moved on",
			first.Items[0].FirstSeen, a.FirstSeen, first.Items[0].LastSeen, a.LastSeen)
	}
	wantCode(t, s.TouchUser(ctx, svc), idflow.EFORBIDDEN)
}

func testStats(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	if st := must(s.Stats(ctx))(t); st != (idflow.Stats{}) {
		t.Fatalf("Stats of an empty store = %+v", st)
	}
	ok(t, s.TouchUser(ctx, alice))
	ok(t, s.TouchUser(ctx, bob))
	ses := must(s.CreateSession(ctx, alice, idflow.ChatSession{}))(t)
	must(s.CreateSession(ctx, bob, idflow.ChatSession{}))(t)
	must(s.AddMessages(ctx, alice, ses.ID, idflow.Message{Role: "user"}, idflow.Message{Role: "assistant"}))(t)
	must(s.CreateWorkflow(ctx, bob, idflow.Workflow{}))(t)
	must(s.CreateDocument(ctx, alice, idflow.Document{Filename: "a.txt"}, []string{"x", "y", "z"}))(t)
	must(s.CreateFact(ctx, bob, idflow.Fact{Content: "f"}))(t)
	want := idflow.Stats{Users: 2, Sessions: 2, Messages: 2, Workflows: 1, Documents: 1, Facts: 4}
	if st := must(s.Stats(ctx))(t); st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
}

func appID(a idflow.App) string             { return a.ID }
func agentID(a idflow.Agent) string         { return a.ID }
func sessionID(s idflow.ChatSession) string { return s.ID }
func messageID(m idflow.Message) string     { return m.ID }
func workflowID(w idflow.Workflow) string   { return w.ID }
func documentID(d idflow.Document) string   { return d.ID }
func factID(f idflow.Fact) string           { return f.ID }
func scoredID(f idflow.ScoredFact) string   { return f.Fact.ID }
func auditID(e idflow.AuditEvent) string    { return e.ID }
func auditUser(e idflow.AuditEvent) string  { return e.UserID }
func factUser(f idflow.Fact) string         { return f.UserID }
