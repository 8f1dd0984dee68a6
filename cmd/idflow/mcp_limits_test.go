package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// This file tests the hardening of /mcp (docs/MCP.md) against idflow
// in production mode: the Origin check, the per-user session and stream
// limits, the idle timeout, and the SSE priming event with its retry field.

// mcpRequest sends one request to /mcp with exactly the given headers
// (besides the token, the session and the protocol version, when set).
func mcpRequest(tb testing.TB, ctx context.Context, method, url, token, sid, version, body string, headers map[string]string) *http.Response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url+"/mcp", rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	if version != "" {
		req.Header.Set("Mcp-Protocol-Version", version)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: mcpTransport}).Do(req)
	if err != nil {
		tb.Fatalf("%s /mcp: %v", method, err)
	}
	return resp
}

// mcpReadAll reads a finite response.
func mcpReadAll(tb testing.TB, resp *http.Response) []byte {
	tb.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// mcpStream opens the server-to-client stream (GET /mcp) of session sid
// and returns once its head arrived; the stream stays open until the test
// cancels it or the server ends it.
func mcpStream(tb testing.TB, url, token, sid string) (resp *http.Response, cancel context.CancelFunc) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	resp = mcpRequest(tb, ctx, "GET", url, token, sid, "2025-06-18", "", map[string]string{"Accept": "text/event-stream"})
	tb.Cleanup(func() { resp.Body.Close() })
	return resp, cancel
}

// mcpWhoamiStatus calls whoami on session sid and returns the HTTP status.
func mcpWhoamiStatus(tb testing.TB, url, token, sid string) int {
	tb.Helper()
	resp, _ := mcpHTTP(tb, "POST", url, token, sid, mcpCallBody(tb, "whoami", nil))
	return resp.StatusCode
}

// mcpCheckProblem requires a problem+json answer with status want.
func mcpCheckProblem(tb testing.TB, what string, resp *http.Response, body []byte, want int) {
	tb.Helper()
	var pd struct {
		Status int `json:"status"`
	}
	if resp.StatusCode != want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") ||
		json.Unmarshal(body, &pd) != nil || pd.Status != want {
		tb.Fatalf("%s: %d %s %s; want %d problem+json", what, resp.StatusCode, resp.Header.Get("Content-Type"), body, want)
	}
}

// TestMCPOriginEndToEnd: through the whole server, a DNS-rebinding-style
// request (a foreign Origin) is refused with 403 even with alice's valid
// token, and opens no session; the public URL's origin and a CORS origin
// are served.
func TestMCPOriginEndToEnd(t *testing.T) {
	t.Parallel()
	s := mcpStart(t, map[string]string{"IDFLOW_CORS_ORIGINS": "http://localhost:6274"})
	alice := s.token(t, "alice")
	for _, origin := range []string{"http://evil.example", "null", strings.Replace(s.URL, "http://", "https://", 1), s.URL[:strings.LastIndex(s.URL, ":")] + ":1"} {
		for _, token := range []string{alice, ""} {
			resp := mcpRequest(t, context.Background(), "POST", s.URL, token, "", "", mcpInitialize, map[string]string{"Origin": origin})
			body := mcpReadAll(t, resp)
			mcpCheckProblem(t, "initialize with Origin "+origin, resp, body, http.StatusForbidden)
			if resp.Header.Get("Mcp-Session-Id") != "" {
				t.Fatalf("a refused Origin %s got a session", origin)
			}
		}
	}
	for _, origin := range []string{s.URL, "http://localhost:6274"} {
		resp := mcpRequest(t, context.Background(), "POST", s.URL, alice, "", "", mcpInitialize, map[string]string{"Origin": origin})
		body := mcpReadAll(t, resp)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
			t.Fatalf("initialize with the allowed Origin %s: %d %s", origin, resp.StatusCode, body)
		}
	}
}

// TestMCPSessionLimit: with IDFLOW_MCP_MAX_SESSIONS_PER_USER=2, alice's
// third session closes her least recently used idle one; with both busy
// (a stream open on each) a new one answers 429, and so does a third
// stream; bob is not affected by alice's sessions.
func TestMCPSessionLimit(t *testing.T) {
	t.Parallel()
	s := mcpStart(t, map[string]string{"IDFLOW_MCP_MAX_SESSIONS_PER_USER": "2"})
	alice, bob := s.token(t, "alice"), s.token(t, "bob")

	s1 := mcpRawSession(t, s.URL, alice)
	s2 := mcpRawSession(t, s.URL, alice)
	if st := mcpWhoamiStatus(t, s.URL, alice, s1); st != http.StatusOK { // s2 is now the least recently used
		t.Fatalf("whoami on s1: %d", st)
	}
	s3 := mcpRawSession(t, s.URL, alice)
	if st := mcpWhoamiStatus(t, s.URL, alice, s2); st != http.StatusNotFound {
		t.Fatalf("alice's least recently used session after she opened a third: %d; want 404 (closed)", st)
	}
	for _, sid := range []string{s1, s3} {
		if st := mcpWhoamiStatus(t, s.URL, alice, sid); st != http.StatusOK {
			t.Fatalf("alice's other sessions after the eviction: %d; want 200", st)
		}
	}

	// bob's sessions count for bob only.
	b1 := mcpRawSession(t, s.URL, bob)
	b2 := mcpRawSession(t, s.URL, bob)
	for _, c := range []struct{ token, sid string }{{alice, s1}, {alice, s3}, {bob, b1}, {bob, b2}} {
		if st := mcpWhoamiStatus(t, s.URL, c.token, c.sid); st != http.StatusOK {
			t.Fatalf("a session after bob opened two: %d; want 200", st)
		}
	}

	// Both of alice's sessions busy: a stream open on each.
	r1, cancel1 := mcpStream(t, s.URL, alice, s1)
	r3, _ := mcpStream(t, s.URL, alice, s3)
	for _, r := range []*http.Response{r1, r3} {
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET /mcp: %d", r.StatusCode)
		}
	}
	resp := mcpRequest(t, context.Background(), "POST", s.URL, alice, "", "", mcpInitialize, nil)
	body := mcpReadAll(t, resp)
	mcpCheckProblem(t, "a third session with both busy", resp, body, http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("the 429: Retry-After %q, session %q", resp.Header.Get("Retry-After"), resp.Header.Get("Mcp-Session-Id"))
	}
	resp = mcpRequest(t, context.Background(), "GET", s.URL, alice, s1, "2025-06-18", "", map[string]string{"Accept": "text/event-stream"})
	body = mcpReadAll(t, resp)
	mcpCheckProblem(t, "a third stream", resp, body, http.StatusTooManyRequests)
	// Requests on the busy sessions, and bob's new sessions, still work.
	if st := mcpWhoamiStatus(t, s.URL, alice, s1); st != http.StatusOK {
		t.Fatalf("whoami on a session with its stream open: %d", st)
	}
	mcpRawSession(t, s.URL, bob)

	// Once s1's stream is closed, s1 is idle again: a new session takes its place.
	cancel1()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := mcpRequest(t, context.Background(), "POST", s.URL, alice, "", "", mcpInitialize, nil)
		body := mcpReadAll(t, resp)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("initialize after a stream closed: %d %s", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // the server sees the closed stream shortly
	}
	if st := mcpWhoamiStatus(t, s.URL, alice, s1); st != http.StatusNotFound {
		t.Fatalf("s1 after the new session: %d; want 404", st)
	}
	if st := mcpWhoamiStatus(t, s.URL, alice, s3); st != http.StatusOK {
		t.Fatalf("s3, busy with its stream: %d; want 200", st)
	}
}

// TestMCPSessionIdleTimeout: a session that gets no request for
// IDFLOW_MCP_SESSION_IDLE_TIMEOUT is closed by the server — its open stream
// ends, and a request on it answers 404.
func TestMCPSessionIdleTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 1500 * time.Millisecond
	s := mcpStart(t, map[string]string{"IDFLOW_MCP_SESSION_IDLE_TIMEOUT": timeout.String()})
	alice := s.token(t, "alice")
	sid := mcpRawSession(t, s.URL, alice)
	idleSince := time.Now()
	resp, _ := mcpStream(t, s.URL, alice, sid)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mcp: %d", resp.StatusCode)
	}
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); close(ended) }()
	select {
	case <-ended:
		if idle := time.Since(idleSince); idle < timeout-200*time.Millisecond {
			t.Fatalf("the session was closed after %s idle; the timeout is %s", idle, timeout)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the session outlived its %s idle timeout by 30s", timeout)
	}
	if st := mcpWhoamiStatus(t, s.URL, alice, sid); st != http.StatusNotFound {
		t.Fatalf("a request on the timed-out session: %d; want 404", st)
	}
}

// sseEvent is one event of an SSE body.
type sseEvent struct{ event, id, retry, data string }

// mcpSSEEvents parses an SSE body (field order kept per event).
func mcpSSEEvents(body string) []sseEvent {
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if seen {
				out = append(out, cur)
			}
			cur, seen = sseEvent{}, false
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "event":
			cur.event = v
		case "id":
			cur.id = v
		case "retry":
			cur.retry = v
		case "data":
			cur.data += v
		default:
			continue // a comment
		}
		seen = true
	}
	return out
}

// TestMCPSSEPrimingAndRetry: for a 2025-11-25 client, each POST's SSE
// stream starts with a priming event (an id, empty data) carrying the retry
// field, and a GET with that id as Last-Event-ID replays the stream; the
// GET stream starts with the retry field; a 2025-06-18 client gets neither.
func TestMCPSSEPrimingAndRetry(t *testing.T) {
	t.Parallel()
	s := mcpStart(t, nil)
	alice := s.token(t, "alice")
	const v = "2025-11-25"
	ctx := context.Background()

	resp := mcpRequest(t, ctx, "POST", s.URL, alice, "", "",
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	body := string(mcpReadAll(t, resp))
	sid := resp.Header.Get("Mcp-Session-Id")
	events := mcpSSEEvents(body)
	if resp.StatusCode != http.StatusOK || sid == "" || len(events) != 2 {
		t.Fatalf("initialize: %d, session %q, events %q", resp.StatusCode, sid, body)
	}
	prime := events[0]
	if prime.id == "" || prime.data != "" || prime.retry != "2000" || !strings.Contains(events[1].data, `"protocolVersion":"2025-11-25"`) {
		t.Fatalf("initialize stream %q; want a priming event (id, empty data, retry: 2000), then the result", body)
	}
	if r := mcpRequest(t, ctx, "POST", s.URL, alice, sid, v, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); r.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", r.StatusCode, mcpReadAll(t, r))
	}

	resp = mcpRequest(t, ctx, "POST", s.URL, alice, sid, v, mcpCallBody(t, "whoami", nil), nil)
	body = string(mcpReadAll(t, resp))
	events = mcpSSEEvents(body)
	if len(events) != 2 || events[0].id == "" || events[0].data != "" || events[0].retry != "2000" ||
		!strings.Contains(events[1].data, mcpUserID("alice")) || events[1].id == "" {
		t.Fatalf("tools/call stream %q; want the priming event with retry, then the result", body)
	}
	// Resumption from the priming event replays the result on the same session.
	resp = mcpRequest(t, ctx, "GET", s.URL, alice, sid, v, "", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": events[0].id})
	replay := string(mcpReadAll(t, resp))
	if resp.StatusCode != http.StatusOK || !strings.Contains(replay, mcpUserID("alice")) {
		t.Fatalf("GET with Last-Event-ID %s: %d %q; want the whoami result again", events[0].id, resp.StatusCode, replay)
	}
	// ... for alice only.
	resp = mcpRequest(t, ctx, "GET", s.URL, s.token(t, "bob"), sid, v, "", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": events[0].id})
	if b := mcpReadAll(t, resp); resp.StatusCode != http.StatusNotFound || strings.Contains(string(b), mcpUserID("alice")) {
		t.Fatalf("bob resuming alice's stream: %d %s; want 404", resp.StatusCode, b)
	}

	// The GET stream starts with the retry field.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp = mcpRequest(t, sctx, "GET", s.URL, alice, sid, v, "", map[string]string{"Accept": "text/event-stream"})
	defer resp.Body.Close()
	head := make([]byte, len("retry: 2000\n\n"))
	if _, err := io.ReadFull(resp.Body, head); err != nil || string(head) != "retry: 2000\n\n" {
		t.Fatalf("GET stream starts %q (%v); want the retry field", head, err)
	}
	cancel()

	// A 2025-06-18 client gets plain messages.
	resp = mcpRequest(t, ctx, "POST", s.URL, alice, sid, "2025-06-18", mcpCallBody(t, "whoami", nil), nil)
	body = string(mcpReadAll(t, resp))
	if events := mcpSSEEvents(body); len(events) != 1 || strings.Contains(body, "retry:") || strings.Contains(body, "prime") {
		t.Fatalf("tools/call of a 2025-06-18 client: %q; want the result alone", body)
	}
}
