package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/llmtest"
)

type usageAnswer struct {
	From  string            `json:"from"`
	To    string            `json:"to"`
	Items []idflow.UsageDay `json:"items"`
}

func (s *prodServer) usage(t *testing.T, who, query string) usageAnswer {
	t.Helper()
	r := s.As(t, who, "GET", "/api/v1/usage"+query, nil)
	mustStatus(t, r, http.StatusOK)
	var u usageAnswer
	r.JSON(t, &u)
	return u
}

func (s *prodServer) say(t *testing.T, who, session, content string) string {
	t.Helper()
	r := s.As(t, who, "POST", "/api/v1/sessions/"+session+"/messages", map[string]any{"content": content})
	mustStatus(t, r, http.StatusCreated)
	var out struct{ Reply struct{ Content string } }
	r.JSON(t, &out)
	return out.Reply.Content
}

// TestUsageRoute: every model call (chat turns, workflow prompt steps) is
// counted for the user it was made for, by day and model, and each user
// reads only their own usage.
func TestUsageRoute(t *testing.T) {
	s := startProdIdflow(t, nil)
	today := time.Now().UTC().Format(idflow.DayFormat)
	if u := s.usage(t, callerAlice, ""); len(u.Items) != 0 || u.To != today ||
		u.From != time.Now().UTC().AddDate(0, 0, -29).Format(idflow.DayFormat) {
		t.Fatalf("before any call: %+v", u)
	}
	ses := s.create(t, callerAlice, "/api/v1/sessions", map[string]any{"title": "usage"})
	if got := s.say(t, callerAlice, ses, "one two three"); got != "echo to Alice Example: one two three" {
		t.Fatalf("reply %q", got)
	}
	s.say(t, callerAlice, ses, "four")
	wf := s.create(t, callerAlice, "/api/v1/workflows", quickWorkflow("usage"))
	run := s.create(t, callerAlice, "/api/v1/workflows/"+wf+"/runs", map[string]any{"input": "x"})
	if st := s.waitRun(t, callerAlice, run); st != "succeeded" {
		t.Fatalf("run %s", st)
	}
	bobSes := s.create(t, callerBob, "/api/v1/sessions", map[string]any{"title": "bob's"})
	s.say(t, callerBob, bobSes, "hello")

	// The day may have turned since the calls: read yesterday too.
	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(idflow.DayFormat)
	sum := func(items []idflow.UsageDay, who string) (calls, tokens int64) {
		for _, d := range items {
			if d.UserID != s.UserID(t, who) || d.Model != "idflow-echo" {
				t.Fatalf("%s's usage holds %+v", who, d)
			}
			calls += d.Calls
			tokens += d.PromptTokens + d.CompletionTokens
		}
		return calls, tokens
	}
	alice := s.usage(t, callerAlice, "?from="+yesterday)
	if calls, tokens := sum(alice.Items, callerAlice); calls != 3 || tokens == 0 {
		t.Fatalf("alice: %+v; want 3 calls (two turns, one prompt step) with tokens", alice)
	}
	if calls, _ := sum(s.usage(t, callerBob, "?from="+yesterday).Items, callerBob); calls != 1 {
		t.Fatalf("bob: %d calls, want 1", calls)
	}
	if c := s.usage(t, callerCarol, "?from="+yesterday); len(c.Items) != 0 {
		t.Fatalf("carol sees %+v", c)
	}
	if a := s.usage(t, callerAdmin, "?from="+yesterday); len(a.Items) != 0 {
		t.Fatalf("the admin's own usage is %+v", a)
	}
	// A range that holds none of it.
	if u := s.usage(t, callerAlice, "?from=2020-01-01&to=2020-01-31"); len(u.Items) != 0 || u.From != "2020-01-01" || u.To != "2020-01-31" {
		t.Fatalf("2020: %+v", u)
	}

	for _, q := range []string{"?from=2026-13-01", "?to=yesterday", "?from=2026-02-30", "?from=2026-03-02&to=2026-03-01",
		"?from=2024-01-01&to=2025-01-01", "?from=" + strings.Repeat("9", 5000)} {
		checkProblem(t, s.As(t, callerAlice, "GET", "/api/v1/usage"+q, nil), http.StatusBadRequest)
	}
	if u := s.usage(t, callerAlice, "?from=2024-01-01&to=2024-12-31"); u.From != "2024-01-01" { // 366 days: the most
		t.Fatalf("a leap year: %+v", u)
	}
	checkProblem(t, s.As(t, callerApp, "GET", "/api/v1/usage", nil), http.StatusForbidden)
	checkProblem(t, s.As(t, callerNone, "GET", "/api/v1/usage", nil), http.StatusUnauthorized)
}

// TestOpenAIModelWired: with IDFLOW_LLM_URL, chat turns go to that server
// through the openai-go client — the configured model and key, the hashed
// user, never the user id — and the usage it reports is recorded.
func TestOpenAIModelWired(t *testing.T) {
	const key = "sk-wired-5f1e2d3c4b5a69788796a5b4c3d2e1f0"
	model := llmtest.New(t,
		llmtest.Reply{Text: "Hi from the model.", Usage: &llmtest.Usage{PromptTokens: 21, CompletionTokens: 4}},
		llmtest.Reply{Status: http.StatusInternalServerError, RetryAfter: "0"})
	s := startProdIdflow(t, map[string]string{"IDFLOW_LLM_URL": model.URL, "IDFLOW_LLM_API_KEY": key,
		"IDFLOW_LLM_MODEL": "test-model", "IDFLOW_LLM_MAX_RETRIES": "0", "IDFLOW_LLM_TIMEOUT": "20s"})

	r := s.As(t, callerAlice, "GET", "/api/v1/llms", nil)
	mustStatus(t, r, http.StatusOK)
	if !bytes.Contains(r.Body, []byte(`"test-model"`)) {
		t.Fatalf("llms: %s", r.Body)
	}
	ses := s.create(t, callerAlice, "/api/v1/sessions", map[string]any{"title": "wired"})
	if got := s.say(t, callerAlice, ses, "hello model"); got != "Hi from the model." {
		t.Fatalf("reply %q", got)
	}
	req := model.Requests()[0]
	aliceID := s.UserID(t, callerAlice)
	if req.Model != "test-model" || req.Header.Get("Authorization") != "Bearer "+key || req.User == "" ||
		strings.Contains(req.User, aliceID) || bytes.Contains(req.Body, []byte(aliceID)) {
		t.Fatalf("the model saw model %q, auth %q, user %q, body %s", req.Model, req.Header.Get("Authorization"), req.User, req.Body)
	}
	if last := req.Messages[len(req.Messages)-1]; last.Role != "user" || last.Text() != "hello model" {
		t.Fatalf("messages %s", req.Body)
	}

	// The model fails: 503, nothing stored, no retry (IDFLOW_LLM_MAX_RETRIES=0),
	// and the answer names neither the key nor the model server.
	body, _ := json.Marshal(map[string]any{"content": "again"})
	hr, err := http.NewRequest("POST", s.URL+"/api/v1/sessions/"+ses+"/messages", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Authorization", "Bearer "+s.Token(t, callerAlice))
	hr.Header.Set("Content-Type", "application/json")
	resp, err := harnessClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	failed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || bytes.Contains(failed, []byte(key)) ||
		bytes.Contains(failed, []byte(strings.TrimPrefix(model.URL, "http://"))) {
		t.Fatalf("a failing model: %d %s", resp.StatusCode, failed)
	}
	if n := len(model.Requests()); n != 2 {
		t.Fatalf("%d model requests, want 2", n)
	}
	if msgs := s.listAll(t, callerAlice, "/api/v1/sessions/"+ses+"/messages"); len(msgs) != 2 {
		t.Fatalf("%d messages after the failed turn, want 2", len(msgs))
	}

	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(idflow.DayFormat)
	u := s.usage(t, callerAlice, "?from="+yesterday)
	if len(u.Items) != 1 || u.Items[0].Model != "test-model" || u.Items[0].PromptTokens != 21 ||
		u.Items[0].CompletionTokens != 4 || u.Items[0].Calls != 1 || u.Items[0].UserID != aliceID {
		t.Fatalf("usage %+v", u)
	}
}
