package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestExport: alice's export is one JSON document holding every object of
// hers — messages inside their sessions, events inside their runs,
// documents as links that answer their bytes — and nothing of bob's, whose
// objects exist beside hers; a PAT with read exports, one without does not.
func TestExport(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	var aliceIDs, bobIDs []string
	alice := newFixture(t, s, callerAlice, false, &aliceIDs)
	bob := newFixture(t, s, callerBob, false, &bobIDs)
	for _, p := range []string{"app_id", "agent_id", "session_id", "workflow_id", "run_id", "document_id", "fact_id", "token_id"} {
		alice.id(p)
		bob.id(p)
	}
	const bobText = "BOB-EXPORT-ONLY-33a1"
	s.create(t, callerBob, "/api/v1/facts", map[string]any{"content": bobText})

	r := s.As(t, callerAlice, "GET", "/api/v1/me/export", nil)
	mustStatus(t, r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" || !strings.Contains(r.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("headers %v", r.Header)
	}
	var doc struct {
		UserID   string `json:"user_id"`
		Sessions []struct {
			ID       string            `json:"id"`
			Messages []json.RawMessage `json:"messages"`
		} `json:"sessions"`
		Runs []struct {
			ID     string            `json:"id"`
			Events []json.RawMessage `json:"events"`
		} `json:"runs"`
		Documents []struct {
			ID         string `json:"id"`
			ContentURL string `json:"content_url"`
		} `json:"documents"`
		Tokens []map[string]any  `json:"tokens"`
		Audit  []json.RawMessage `json:"audit"`
	}
	r.JSON(t, &doc)
	body := string(r.Body)
	if doc.UserID != s.UserID(t, callerAlice) {
		t.Errorf("user_id %q", doc.UserID)
	}
	for _, id := range aliceIDs {
		if !strings.Contains(body, id) {
			t.Errorf("alice's %s is not in her export", id)
		}
	}
	for _, id := range append(bobIDs, s.UserID(t, callerBob), bobText) {
		if strings.Contains(body, id) {
			i := strings.Index(body, id)
			t.Errorf("bob's %s is in alice's export: …%s…", id, body[max(0, i-300):i+len(id)])
		}
	}
	var all any
	r.JSON(t, &all)
	walkJSON(all, func(key string, val any) {
		if key == "user_id" && val != doc.UserID {
			t.Errorf("an object of user %v in alice's export", val)
		}
	})
	if len(doc.Sessions) != 1 || len(doc.Sessions[0].Messages) < 2 {
		t.Errorf("sessions %+v; want one with its messages", doc.Sessions)
	}
	if len(doc.Runs) != 1 || len(doc.Runs[0].Events) < 2 {
		t.Errorf("runs %+v; want one with its events", doc.Runs)
	}
	if len(doc.Documents) != 1 || doc.Documents[0].ContentURL != "/api/v1/documents/"+doc.Documents[0].ID+"/content" {
		t.Fatalf("documents %+v; want one, as a link", doc.Documents)
	}
	var raw struct {
		Documents []map[string]any `json:"documents"`
	}
	r.JSON(t, &raw)
	for k := range raw.Documents[0] {
		if k == "content" || k == "data" || k == "bytes" {
			t.Errorf("the document's bytes are inlined (%s)", k)
		}
	}
	mustStatus(t, s.As(t, callerAlice, "GET", doc.Documents[0].ContentURL, nil), http.StatusOK)
	for _, tok := range doc.Tokens {
		if _, has := tok["token"]; has {
			t.Errorf("the export shows a token: %v", tok)
		}
	}
	if len(doc.Audit) == 0 {
		t.Error("no audit events")
	}
	// The export itself is audited.
	found := false
	for _, e := range s.auditEvents(t, callerAlice, "/api/v1/audit") {
		found = found || (e.Action == "user.export" && e.Outcome == "success")
	}
	if !found {
		t.Error("the export is not audited")
	}
	s.mintPAT(t, "reader", callerAlice, []string{"read"})
	s.mintPAT(t, "writer", callerAlice, []string{"write"})
	mustStatus(t, s.As(t, "reader", "GET", "/api/v1/me/export", nil), http.StatusOK)
	checkProblem(t, s.As(t, "writer", "GET", "/api/v1/me/export", nil), http.StatusForbidden)
}
