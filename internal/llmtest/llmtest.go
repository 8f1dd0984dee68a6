// Package llmtest is an OpenAI-compatible model server for tests: it answers
// POST /v1/chat/completions from a script (or, for concurrent callers, a
// function of each request: NewFunc), streams in the OpenAI chunk
// format (Server-Sent Events, usage in a last chunk when asked), emits tool
// calls with their arguments in fragments, fails on demand (a status with
// Retry-After, a stream cut after its first tokens), holds its answer until
// the test lets it go, and records every request it received.
//
// It is test support: only _test.go files import it
// (principal_construction_test.go enforces it).
package llmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Reply is one scripted answer, used by one request, in order.
type Reply struct {
	// Status, when not 0 or 200, answers an OpenAI error object with this
	// status (and RetryAfter as the Retry-After header, when set).
	Status     int
	RetryAfter string

	// Text is the assistant's text. A stream sends it in Fragments when
	// they are set (they must add up to Text), else word by word.
	Text      string
	Fragments []string
	// ToolCalls are the assistant's tool calls; a stream sends each one's
	// arguments in its Fragments when set, else in two halves.
	ToolCalls []ToolCall
	// Usage is reported on the answer (a stream: in its last chunk, when
	// the request asked for stream_options.include_usage). Nil reports the
	// words of the request's messages and of the answer, as tokens.
	Usage *Usage

	// Hold, when set, delays the answer until it is closed (or the client
	// goes away): before anything is written when HoldAfter is 0, else (a
	// stream) after HoldAfter text fragments have been sent and flushed.
	Hold      <-chan struct{}
	HoldAfter int
	// CutAfter, when > 0, breaks a stream's connection after that many text
	// fragments, as a crashing server would.
	CutAfter int
}

// ToolCall is a scripted tool call.
type ToolCall struct {
	ID, Name  string
	Arguments string
	Fragments []string
}

// Usage is a token count as OpenAI reports it.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// Request is what the server received.
type Request struct {
	At           time.Time
	Header       http.Header
	Model        string
	User         string
	Stream       bool
	IncludeUsage bool
	Messages     []Message
	Tools        []Tool
	Body         json.RawMessage // the whole request, as sent

	clientGone    chan struct{}
	clientGoneSet sync.Once
}

// ClientGone is closed when the client went away while the server was
// holding or streaming this request's answer.
func (r *Request) ClientGone() <-chan struct{} { return r.clientGone }

// Message is one message of a request, as OpenAI's wire format has it.
type Message struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// Text answers the message's content as text (a string, or the text parts).
func (m Message) Text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(m.Content, &parts)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

// Tool is one function tool offered in a request.
type Tool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// Server is the scripted model server.
type Server struct {
	// URL is the base URL an OpenAI client is given: http://127.0.0.1:port/v1.
	URL string

	t        testing.TB
	srv      *httptest.Server
	mu       sync.Mutex
	script   []Reply
	respond  func(*Request) Reply
	requests []*Request
}

// New starts a server that answers from script, in order; a request
// beyond the script fails the test and answers 500. It stops at the end of
// the test.
func New(t testing.TB, script ...Reply) *Server {
	s := &Server{t: t, script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + "/v1"
	t.Cleanup(s.srv.Close)
	return s
}

// NewFunc starts a server that answers every request with respond(req):
// for concurrent callers, whose requests arrive in no set order, the
// answer is chosen from the request itself. respond runs on the request's
// goroutine and may block (until the client goes away, say). It stops at
// the end of the test.
func NewFunc(t testing.TB, respond func(*Request) Reply) *Server {
	s := New(t)
	s.respond = respond
	return s
}

// Close stops the server now (a model server that went down).
func (s *Server) Close() { s.srv.Close() }

// Script appends replies to the script.
func (s *Server) Script(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, replies...)
}

// Requests answers every request received so far, in order.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.requests...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, `{"error":{"message":"not found","type":"invalid_request_error"}}`, http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var in struct {
		Model         string    `json:"model"`
		User          string    `json:"user"`
		Stream        bool      `json:"stream"`
		Messages      []Message `json:"messages"`
		Tools         []Tool    `json:"tools"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		s.t.Errorf("llmtest: request body is not JSON: %v", err)
		writeError(w, http.StatusBadRequest, "", "bad json")
		return
	}
	req := &Request{At: time.Now(), Header: r.Header.Clone(), Model: in.Model, User: in.User, Stream: in.Stream,
		IncludeUsage: in.StreamOptions.IncludeUsage, Messages: in.Messages, Tools: in.Tools, Body: body,
		clientGone: make(chan struct{})}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	var reply Reply
	ok := len(s.script) > 0
	if ok {
		reply, s.script = s.script[0], s.script[1:]
	}
	respond := s.respond
	s.mu.Unlock()
	if !ok && respond != nil { // the script first, then respond
		reply, ok = respond(req), true
	}
	if !ok {
		s.t.Errorf("llmtest: request %d is beyond the script", len(s.Requests()))
		writeError(w, http.StatusInternalServerError, "", "script exhausted")
		return
	}
	if reply.Hold != nil && reply.HoldAfter == 0 && !s.hold(r, req, reply.Hold) {
		return
	}
	if reply.Status != 0 && reply.Status != http.StatusOK {
		if reply.RetryAfter != "" {
			w.Header().Set("Retry-After", reply.RetryAfter)
		}
		writeError(w, reply.Status, "", http.StatusText(reply.Status))
		return
	}
	usage := reply.usage(in.Messages)
	if in.Stream {
		s.stream(w, r, req, reply, usage, in.StreamOptions.IncludeUsage)
		return
	}
	s.complete(w, in.Model, reply, usage)
}

// hold waits for release or for the client to go away (false).
func (s *Server) hold(r *http.Request, req *Request, release <-chan struct{}) bool {
	select {
	case <-release:
		return true
	case <-r.Context().Done():
		req.clientGoneSet.Do(func() { close(req.clientGone) })
		return false
	}
}

func (rp Reply) usage(msgs []Message) Usage {
	if rp.Usage != nil {
		return *rp.Usage
	}
	var u Usage
	for _, m := range msgs {
		u.PromptTokens += int64(len(strings.Fields(m.Text())))
	}
	u.CompletionTokens = int64(len(strings.Fields(rp.Text)) + len(rp.ToolCalls))
	return u
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": message, "type": "server_error", "code": code, "param": nil}})
}

type wireToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func wireUsage(u Usage) map[string]any {
	return map[string]any{"prompt_tokens": u.PromptTokens, "completion_tokens": u.CompletionTokens,
		"total_tokens": u.PromptTokens + u.CompletionTokens}
}

func finishReason(rp Reply) string {
	if len(rp.ToolCalls) > 0 {
		return "tool_calls"
	}
	return "stop"
}

func (s *Server) complete(w http.ResponseWriter, model string, rp Reply, u Usage) {
	msg := map[string]any{"role": "assistant", "content": nil, "refusal": nil}
	if rp.Text != "" || len(rp.ToolCalls) == 0 {
		msg["content"] = rp.Text
	}
	if len(rp.ToolCalls) > 0 {
		calls := make([]wireToolCall, len(rp.ToolCalls))
		for i, tc := range rp.ToolCalls {
			calls[i].ID, calls[i].Type = tc.ID, "function"
			calls[i].Function.Name, calls[i].Function.Arguments = tc.Name, tc.Arguments
		}
		msg["tool_calls"] = calls
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-llmtest", "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finishReason(rp), "logprobs": nil}},
		"usage":   wireUsage(u),
	})
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *Request, rp Reply, u Usage, includeUsage bool) {
	flusher := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	gone := func() bool {
		if r.Context().Err() != nil {
			req.clientGoneSet.Do(func() { close(req.clientGone) })
			return true
		}
		return false
	}
	send := func(choices []any, usage any) bool {
		chunk := map[string]any{"id": "chatcmpl-llmtest", "object": "chat.completion.chunk",
			"created": time.Now().Unix(), "model": req.Model, "choices": choices}
		if includeUsage {
			chunk["usage"] = usage
		}
		b, err := json.Marshal(chunk)
		if err != nil {
			panic(err)
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			gone()
			return false
		}
		flusher.Flush()
		return !gone()
	}
	delta := func(d map[string]any, finish any) []any {
		return []any{map[string]any{"index": 0, "delta": d, "finish_reason": finish, "logprobs": nil}}
	}
	if !send(delta(map[string]any{"role": "assistant", "content": ""}, nil), nil) {
		return
	}
	fragments := rp.Fragments
	if fragments == nil && rp.Text != "" {
		fragments = strings.SplitAfter(rp.Text, " ")
	}
	for i, f := range fragments {
		if !send(delta(map[string]any{"content": f}, nil), nil) {
			return
		}
		if rp.CutAfter == i+1 {
			panic(http.ErrAbortHandler) // the connection drops mid-stream
		}
		if rp.Hold != nil && rp.HoldAfter == i+1 && !s.hold(r, req, rp.Hold) {
			return
		}
	}
	for i, tc := range rp.ToolCalls {
		idx := i
		var head wireToolCall
		head.Index, head.ID, head.Type, head.Function.Name = &idx, tc.ID, "function", tc.Name
		if !send(delta(map[string]any{"tool_calls": []wireToolCall{head}}, nil), nil) {
			return
		}
		args := tc.Fragments
		if args == nil {
			half := len(tc.Arguments) / 2
			args = []string{tc.Arguments[:half], tc.Arguments[half:]}
		}
		for _, a := range args {
			var frag wireToolCall
			frag.Index = &idx
			frag.Function.Arguments = a
			if !send(delta(map[string]any{"tool_calls": []wireToolCall{frag}}, nil), nil) {
				return
			}
		}
	}
	if !send(delta(map[string]any{}, finishReason(rp)), nil) {
		return
	}
	if includeUsage && !send([]any{}, wireUsage(u)) {
		return
	}
	if _, err := io.WriteString(w, "data: [DONE]\n\n"); err == nil {
		flusher.Flush()
	}
}
