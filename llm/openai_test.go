package llm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/llmtest"
	"github.com/idflow/idflow/llm"
)

var testKey = bytes.Repeat([]byte{7}, llm.MinUserKeyLen)

const apiKey = "sk-test-7c1f0d9e4b2a6c8e0f1a3b5d7e9f1a2b"

func client(t *testing.T, srv *llmtest.Server, mod ...func(*llm.OpenAIConfig)) *llm.OpenAI {
	t.Helper()
	cfg := llm.OpenAIConfig{BaseURL: srv.URL, APIKey: apiKey, Model: "gpt-test", UserKey: testKey, MaxRetries: 2}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := llm.NewOpenAI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ask(msgs ...string) idflow.ChatRequest {
	var req idflow.ChatRequest
	for _, m := range msgs {
		req.Messages = append(req.Messages, user(m))
	}
	return req
}

// wantUnavailable checks err is EUNAVAILABLE with a message that starts
// with prefix, and that neither it nor its cause carries the API key.
func wantUnavailable(t *testing.T, err error, prefix string) {
	t.Helper()
	if idflow.ErrorCode(err) != idflow.EUNAVAILABLE || !strings.HasPrefix(idflow.ErrorMessage(err), prefix) {
		t.Fatalf("got %v (code %s), want %s %q…", err, idflow.ErrorCode(err), idflow.EUNAVAILABLE, prefix)
	}
	if strings.Contains(err.Error(), apiKey) || strings.Contains(err.Error(), apiKey[len(apiKey)-8:]) {
		t.Fatalf("the error carries the API key: %v", err)
	}
}

// TestOpenAIStreamsText: deltas leave as they arrive (the server holds the
// rest of its answer until the client has the first fragment), the text
// adds up, and the usage comes from the last chunk, which was asked for.
func TestOpenAIStreamsText(t *testing.T) {
	release := make(chan struct{})
	srv := llmtest.New(t, llmtest.Reply{Text: "Hello, wide world", Fragments: []string{"Hello", ", wide", " world"},
		Hold: release, HoldAfter: 1, Usage: &llmtest.Usage{PromptTokens: 12, CompletionTokens: 3}})
	var deltas []string
	resp, err := client(t, srv).Chat(t.Context(), alice, ask("hi"), func(d string) error {
		if len(deltas) == 0 {
			close(release) // the first fragment arrived while the server held the rest
		}
		deltas = append(deltas, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deltas, "|") != "Hello|, wide| world" || resp.Content != "Hello, wide world" || resp.Model != "gpt-test" {
		t.Fatalf("deltas %q, response %+v", deltas, resp)
	}
	if resp.Usage != (idflow.Usage{PromptTokens: 12, CompletionTokens: 3}) {
		t.Fatalf("usage %+v", resp.Usage)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || !reqs[0].Stream || !reqs[0].IncludeUsage || reqs[0].Model != "gpt-test" {
		t.Fatalf("requests %+v", reqs)
	}
	if got := reqs[0].Header.Get("Authorization"); got != "Bearer "+apiKey {
		t.Fatalf("Authorization %q", got)
	}
}

// TestOpenAIStreamedToolCalls: tool calls streamed in fragments come back
// whole; the offered tools and a conversation with an earlier tool call
// and its result reach the model in OpenAI's wire format.
func TestOpenAIStreamedToolCalls(t *testing.T) {
	srv := llmtest.New(t, llmtest.Reply{Text: "Let me look.", ToolCalls: []llmtest.ToolCall{
		{ID: "call_a", Name: "search_memory", Arguments: `{"query":"budget 2026"}`, Fragments: []string{`{"qu`, `ery":"bud`, `get 2026"}`}},
		{ID: "call_b", Name: "whoami", Arguments: ``},
	}})
	req := idflow.ChatRequest{
		Messages: []idflow.ChatMessage{
			{Role: "system", Content: "You help."},
			user("who am I?"),
			{Role: "assistant", ToolCalls: []idflow.ToolCall{{ID: "call_0", Name: "whoami", Arguments: json.RawMessage(`{}`)}}},
			{Role: "tool", ToolCallID: "call_0", Content: `{"user_id":"alice"}`},
			{Role: "assistant", Content: "You are alice."},
			user("and my budget?"),
		},
		Tools: []idflow.ToolSpec{
			{Name: "search_memory", Description: "Search your facts", Parameters: json.RawMessage(`{"type":"object","properties":{"query":{"type":"string"}},"required":["query"]}`)},
			{Name: "whoami", Description: "Who you are"},
		},
	}
	var deltas []string
	resp, err := client(t, srv).Chat(t.Context(), alice, req, func(d string) error { deltas = append(deltas, d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if resp.Content != "Let me look." || strings.Join(deltas, "") != "Let me look." || len(resp.ToolCalls) != 2 {
		t.Fatalf("response %+v, deltas %q", resp, deltas)
	}
	if c := resp.ToolCalls[0]; c.ID != "call_a" || c.Name != "search_memory" || string(c.Arguments) != `{"query":"budget 2026"}` {
		t.Fatalf("first call %+v", c)
	}
	if c := resp.ToolCalls[1]; c.ID != "call_b" || c.Name != "whoami" || string(c.Arguments) != `{}` {
		t.Fatalf("second call %+v (no arguments is {})", c)
	}
	got := srv.Requests()[0]
	if len(got.Tools) != 2 || got.Tools[0].Type != "function" || got.Tools[0].Function.Name != "search_memory" ||
		got.Tools[0].Function.Description != "Search your facts" || !strings.Contains(string(got.Tools[0].Function.Parameters), `"required":["query"]`) ||
		string(got.Tools[1].Function.Parameters) != `{"properties":{},"type":"object"}` {
		t.Fatalf("tools %s", got.Body)
	}
	m := got.Messages
	if len(m) != 6 || m[0].Role != "system" || m[1].Text() != "who am I?" ||
		m[2].Role != "assistant" || len(m[2].ToolCalls) != 1 || m[2].ToolCalls[0].ID != "call_0" || m[2].ToolCalls[0].Function.Name != "whoami" ||
		m[3].Role != "tool" || m[3].ToolCallID != "call_0" || m[3].Text() != `{"user_id":"alice"}` || m[4].Text() != "You are alice." {
		t.Fatalf("messages %s", got.Body)
	}
}

func TestOpenAIWholeAnswer(t *testing.T) {
	srv := llmtest.New(t,
		llmtest.Reply{Text: "plain answer", Usage: &llmtest.Usage{PromptTokens: 9, CompletionTokens: 2}},
		llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "c1", Name: "add_fact", Arguments: `{"content":"x"}`}, {ID: "c2", Name: "broken", Arguments: `{not json`}}})
	c := client(t, srv)
	resp, err := c.Chat(t.Context(), alice, ask("q"), nil)
	if err != nil || resp.Content != "plain answer" || resp.Usage != (idflow.Usage{PromptTokens: 9, CompletionTokens: 2}) {
		t.Fatalf("got %+v, %v", resp, err)
	}
	resp, err = c.Chat(t.Context(), alice, ask("q"), nil)
	if err != nil || len(resp.ToolCalls) != 2 || string(resp.ToolCalls[0].Arguments) != `{"content":"x"}` {
		t.Fatalf("got %+v, %v", resp, err)
	}
	// Arguments that are not JSON stay valid JSON (a string), which the
	// catalog refuses as not an object.
	if a := resp.ToolCalls[1].Arguments; string(a) != `"{not json"` || !json.Valid(a) {
		t.Fatalf("broken arguments became %s", a)
	}
	if r := srv.Requests(); r[0].Stream || r[0].IncludeUsage {
		t.Fatalf("a whole answer was streamed: %s", r[0].Body)
	}
}

// TestOpenAIHashedUser: the `user` field is a keyed hash, stable per user,
// different between users and between keys, and the user id appears
// nowhere in the request.
func TestOpenAIHashedUser(t *testing.T) {
	carolID := "3f0c9a5e-7b1d-4e2a-9c8f-carol-oid"
	carol := authtest.User(carolID, "t-two")
	srv := llmtest.New(t, llmtest.Reply{Text: "a"}, llmtest.Reply{Text: "b"}, llmtest.Reply{Text: "c"}, llmtest.Reply{Text: "d"})
	c := client(t, srv)
	for _, p := range []idflow.Principal{carol, carol, bob} {
		if _, err := c.Chat(t.Context(), p, ask("hello"), nil); err != nil {
			t.Fatal(err)
		}
	}
	other := client(t, srv, func(cfg *llm.OpenAIConfig) { cfg.UserKey = bytes.Repeat([]byte{8}, 32) })
	if _, err := other.Chat(t.Context(), carol, ask("hello"), nil); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()
	if r[0].User == "" || r[0].User != r[1].User || r[0].User != llm.HashedUser(testKey, carol) {
		t.Fatalf("user fields %q %q, want %q", r[0].User, r[1].User, llm.HashedUser(testKey, carol))
	}
	if r[2].User == r[0].User || r[3].User == r[0].User {
		t.Fatalf("bob %q / another key %q answer carol's hash %q", r[2].User, r[3].User, r[0].User)
	}
	for i, req := range r {
		if bytes.Contains(req.Body, []byte(carolID)) || bytes.Contains(req.Body, []byte("carol-oid")) || strings.Contains(req.User, "bob") {
			t.Fatalf("request %d carries the user id: %s", i, req.Body)
		}
	}
}

func TestOpenAIRetries(t *testing.T) {
	t.Run("429 then 500 then an answer", func(t *testing.T) {
		srv := llmtest.New(t, llmtest.Reply{Status: 429, RetryAfter: "0"}, llmtest.Reply{Status: 503, RetryAfter: "0"}, llmtest.Reply{Text: "finally"})
		var deltas []string
		resp, err := client(t, srv).Chat(t.Context(), alice, ask("q"), func(d string) error { deltas = append(deltas, d); return nil })
		if err != nil || resp.Content != "finally" || strings.Join(deltas, "") != "finally" {
			t.Fatalf("got %+v, %v (deltas %q)", resp, err, deltas)
		}
		r := srv.Requests()
		if len(r) != 3 || r[2].Header.Get("X-Stainless-Retry-Count") != "2" {
			t.Fatalf("%d requests", len(r))
		}
	})
	t.Run("Retry-After is honoured", func(t *testing.T) {
		srv := llmtest.New(t, llmtest.Reply{Status: 429, RetryAfter: "1"}, llmtest.Reply{Text: "ok"})
		if _, err := client(t, srv).Chat(t.Context(), alice, ask("q"), nil); err != nil {
			t.Fatal(err)
		}
		r := srv.Requests()
		if len(r) != 2 || r[1].At.Sub(r[0].At) < time.Second {
			t.Fatalf("%d requests, %v apart; want 2, at least 1s apart", len(r), r[len(r)-1].At.Sub(r[0].At))
		}
	})
	t.Run("a Retry-After beyond the bound is not waited for", func(t *testing.T) {
		srv := llmtest.New(t, llmtest.Reply{Status: 429, RetryAfter: "3600"})
		_, err := client(t, srv).Chat(t.Context(), alice, ask("q"), nil)
		wantUnavailable(t, err, "the model is rate limited")
		if n := len(srv.Requests()); n != 1 {
			t.Fatalf("%d requests", n)
		}
	})
	t.Run("retries run out", func(t *testing.T) {
		srv := llmtest.New(t, llmtest.Reply{Status: 500, RetryAfter: "0"}, llmtest.Reply{Status: 502, RetryAfter: "0"})
		_, err := client(t, srv, func(c *llm.OpenAIConfig) { c.MaxRetries = 1 }).Chat(t.Context(), alice, ask("q"), nil)
		wantUnavailable(t, err, "the model is unavailable")
		if n := len(srv.Requests()); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
	t.Run("a client error is not retried", func(t *testing.T) {
		srv := llmtest.New(t, llmtest.Reply{Status: 400})
		_, err := client(t, srv).Chat(t.Context(), alice, ask("q"), nil)
		wantUnavailable(t, err, "the model refused the request")
		if n := len(srv.Requests()); n != 1 {
			t.Fatalf("%d requests", n)
		}
	})
}

// TestOpenAINoRetryAfterFirstDelta: a stream that breaks after its first
// fragment fails once; a retry would send that text again.
func TestOpenAINoRetryAfterFirstDelta(t *testing.T) {
	srv := llmtest.New(t, llmtest.Reply{Text: "partial answer here", CutAfter: 1})
	var deltas []string
	_, err := client(t, srv, func(c *llm.OpenAIConfig) { c.MaxRetries = 5 }).Chat(t.Context(), alice, ask("q"),
		func(d string) error { deltas = append(deltas, d); return nil })
	wantUnavailable(t, err, "the model is unavailable")
	if n := len(srv.Requests()); n != 1 || strings.Join(deltas, "|") != "partial " {
		t.Fatalf("%d requests, deltas %q; want 1 request and the first fragment once", n, deltas)
	}
}

// TestOpenAICancel: ending the caller's context stops the stream; the
// server sees the client go away.
func TestOpenAICancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := llmtest.New(t, llmtest.Reply{Text: "one two three", Hold: release, HoldAfter: 1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := client(t, srv).Chat(ctx, alice, ask("q"), func(string) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	select {
	case <-srv.Requests()[0].ClientGone():
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the client go away")
	}
}

// TestOpenAITimeout: a model that does not answer within the timeout
// fails the call — before its first byte, or in the middle of a stream
// (the timeout covers the whole answer) — and a timed-out attempt is not
// retried.
func TestOpenAITimeout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stream    bool
		holdAfter int
	}{{"whole", false, 0}, {"stream, before the first token", true, 0}, {"stream, mid-way", true, 1}} {
		release := make(chan struct{})
		srv := llmtest.New(t, llmtest.Reply{Text: "late answer", Hold: release, HoldAfter: tc.holdAfter})
		var onDelta func(string) error
		var deltas []string
		if tc.stream {
			onDelta = func(d string) error { deltas = append(deltas, d); return nil }
		}
		start := time.Now()
		_, err := client(t, srv, func(c *llm.OpenAIConfig) { c.Timeout = 300 * time.Millisecond }).Chat(t.Context(), alice, ask("q"), onDelta)
		close(release)
		wantUnavailable(t, err, "the model did not answer in time")
		if d := time.Since(start); d > 10*time.Second || len(deltas) != tc.holdAfter || len(srv.Requests()) != 1 {
			t.Fatalf("%s: failed after %v, deltas %q, %d requests", tc.name, d, deltas, len(srv.Requests()))
		}
	}
}

func TestOpenAIErrorsCarryNoSecret(t *testing.T) {
	srv := llmtest.New(t, llmtest.Reply{Status: http.StatusUnauthorized})
	_, err := client(t, srv).Chat(t.Context(), alice, ask("q"), nil)
	wantUnavailable(t, err, "the model refused idflow's credentials")
	if got := srv.Requests()[0].Header.Get("Authorization"); got != "Bearer "+apiKey {
		t.Fatalf("the key was not sent (%q), so the test proves nothing", got)
	}
	// Nothing listens here any more: a connection error.
	down := llmtest.New(t)
	url := down.URL
	c := client(t, down, func(c *llm.OpenAIConfig) { c.BaseURL = url; c.MaxRetries = 0 })
	down.Close()
	_, err = c.Chat(t.Context(), alice, ask("q"), nil)
	wantUnavailable(t, err, "the model is unavailable")
}

// TestOpenAIIgnoresEnvironment: the SDK's own variables do not reach the
// request: the configuration is idflow's alone.
func TestOpenAIIgnoresEnvironment(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-from-the-environment")
	t.Setenv("OPENAI_ORG_ID", "org-env")
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	srv := llmtest.New(t, llmtest.Reply{Text: "ok"})
	if _, err := client(t, srv, func(c *llm.OpenAIConfig) { c.APIKey = "" }).Chat(t.Context(), alice, ask("q"), nil); err != nil {
		t.Fatal(err)
	}
	h := srv.Requests()[0].Header
	if h.Get("Authorization") != "" || h.Get("OpenAI-Organization") != "" {
		t.Fatalf("environment leaked into the request: %v", h)
	}
}

func TestOpenAIBounds(t *testing.T) {
	calls := func(n int, args string) []llmtest.ToolCall {
		var out []llmtest.ToolCall
		for i := range n {
			out = append(out, llmtest.ToolCall{ID: "c" + string(rune('a'+i)), Name: "whoami", Arguments: args})
		}
		return out
	}
	limits := func(c *llm.OpenAIConfig) { c.MaxToolCalls, c.MaxArgumentBytes, c.MaxResponseBytes = 2, 100, 64<<10 }
	for _, tc := range []struct {
		name  string
		reply llmtest.Reply
	}{
		{"too many tool calls", llmtest.Reply{ToolCalls: calls(3, "{}")}},
		{"arguments too long", llmtest.Reply{ToolCalls: calls(1, `{"q":"`+strings.Repeat("x", 200)+`"}`)}},
		{"answer too large", llmtest.Reply{Text: strings.Repeat("word ", 20000)}},
	} {
		for _, stream := range []bool{false, true} {
			srv := llmtest.New(t, tc.reply)
			var onDelta func(string) error
			if stream {
				onDelta = func(string) error { return nil }
			}
			_, err := client(t, srv, limits).Chat(t.Context(), alice, ask("q"), onDelta)
			wantUnavailable(t, err, "the model's answer is over idflow's limits")
			if n := len(srv.Requests()); n != 1 {
				t.Fatalf("%s: %d requests", tc.name, n)
			}
		}
	}
	// At the bounds exactly: accepted.
	srv := llmtest.New(t, llmtest.Reply{ToolCalls: calls(2, `{"q":"`+strings.Repeat("x", 92)+`"}`)})
	if resp, err := client(t, srv, limits).Chat(t.Context(), alice, ask("q"), nil); err != nil || len(resp.ToolCalls) != 2 {
		t.Fatalf("at the bounds: %+v, %v", resp, err)
	}
}

func TestOpenAIRefusesWithoutAUser(t *testing.T) {
	srv := llmtest.New(t)
	_, err := client(t, srv).Chat(t.Context(), authtest.App("svc"), ask("q"), nil)
	if idflow.ErrorCode(err) != idflow.EFORBIDDEN || len(srv.Requests()) != 0 {
		t.Fatalf("app-only: %v, %d requests", err, len(srv.Requests()))
	}
}

func TestNewOpenAIValidates(t *testing.T) {
	ok := llm.OpenAIConfig{BaseURL: "https://api.example/v1", Model: "m", UserKey: testKey}
	if _, err := llm.NewOpenAI(ok); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*llm.OpenAIConfig){
		"short key":    func(c *llm.OpenAIConfig) { c.UserKey = testKey[:31] },
		"no key":       func(c *llm.OpenAIConfig) { c.UserKey = nil },
		"relative URL": func(c *llm.OpenAIConfig) { c.BaseURL = "/v1" },
		"ftp URL":      func(c *llm.OpenAIConfig) { c.BaseURL = "ftp://x/v1" },
		"no model":     func(c *llm.OpenAIConfig) { c.Model = "" },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := llm.NewOpenAI(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestOpenAIConcurrentUsers: calls of different users at once each carry
// their own hash.
func TestOpenAIConcurrentUsers(t *testing.T) {
	const n = 8
	var script []llmtest.Reply
	for range 2 * n {
		script = append(script, llmtest.Reply{Text: "ok"})
	}
	srv := llmtest.New(t, script...)
	c := client(t, srv)
	var wg sync.WaitGroup
	for range n {
		for _, p := range []idflow.Principal{alice, bob} {
			wg.Go(func() {
				if _, err := c.Chat(t.Context(), p, ask(p.UserID+" asks"), nil); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	for _, r := range srv.Requests() {
		who := strings.TrimSuffix(r.Messages[0].Text(), " asks")
		want := map[string]string{"alice": llm.HashedUser(testKey, alice), "bob": llm.HashedUser(testKey, bob)}[who]
		if r.User != want {
			t.Fatalf("%s's request carries %q, want %q", who, r.User, want)
		}
	}
}
