package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow/auth/authtest"
)

// This file is the harness of the /mcp tests: idflow in production mode
// (run() with an authtest issuer, no --dev), tokens for named users, the
// go-sdk MCP client with a bearer token, and raw HTTP for exact statuses.
// Its names start with mcp so they cannot collide with other harnesses.

// mcpUser is a user of the test issuer.
type mcpUser struct {
	sub, name, email string
	groups           []string
}

var mcpUsers = map[string]mcpUser{
	"alice": {sub: "0a11ce00-mcp-4000-8000-000000000001", name: "Alice Example", email: "alice@t-one.example", groups: []string{"engineering"}},
	"bob":   {sub: "0b0b0000-mcp-4000-8000-000000000002", name: "Bob Example", email: "bob@t-one.example", groups: []string{"sales"}},
}

// mcpAppClient is the client id of app-only tokens.
const mcpAppClient = "mcp-test-app-client"

// mcpServer is `idflow serve` in production mode, in this process.
type mcpServer struct {
	URL    string
	Issuer *authtest.Issuer
	stderr *syncBuffer
}

// mcpStart starts idflow against a fresh authtest issuer; extra adds or
// overrides variables. It returns once /healthz answers, and stops the
// server when the test or benchmark ends.
func mcpStart(tb testing.TB, extra map[string]string) *mcpServer {
	tb.Helper()
	iss := authtest.NewIssuer(tb)
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		env := map[string]string{
			"IDFLOW_OIDC_ISSUER":   iss.Issuer(),
			"IDFLOW_OIDC_AUDIENCE": iss.Audience(),
			"IDFLOW_DATA_DIR":      tb.TempDir(),
			"IDFLOW_LISTEN":        addr,
			"IDFLOW_LOG_LEVEL":     "warn",
		}
		for k, v := range extra {
			env[k] = v
		}
		s, err := mcpTryStart(tb, env)
		if err == nil {
			s.Issuer = iss
			return s
		}
		if attempt < 2 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		tb.Fatalf("idflow serve: %v", err)
	}
}

func mcpTryStart(tb testing.TB, env map[string]string) (*mcpServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &mcpServer{URL: "http://" + env["IDFLOW_LISTEN"], stderr: &syncBuffer{}}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, envOf(env), io.Discard, s.stderr) }()
	deadline := time.Now().Add(60 * time.Second)
	pause := 5 * time.Millisecond
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if resp, err := client.Get(s.URL + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				tb.Cleanup(func() {
					cancel()
					select {
					case err := <-done:
						if err != nil {
							tb.Errorf("idflow serve returned %v after cancel", err)
						}
					case <-time.After(30 * time.Second):
						tb.Errorf("idflow serve did not stop within 30s of cancel")
					}
					if tb.Failed() {
						tb.Logf("idflow stderr:\n%s", s.stderr.String())
					}
				})
				return s, nil
			}
		}
		select {
		case err := <-done:
			cancel()
			if err == nil {
				err = errors.New("returned before it was healthy")
			}
			return nil, err
		case <-time.After(pause):
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			return nil, errors.New("/healthz did not answer within 60s:\n" + s.stderr.String())
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// claims are the access-token claims of a named user: an RFC 9068-style
// token for the API audience with the user's groups and scope "idflow".
func (s *mcpServer) claims(tb testing.TB, who string) authtest.Claims {
	tb.Helper()
	u, ok := mcpUsers[who]
	if !ok {
		tb.Fatalf("no test user %q", who)
	}
	return s.Issuer.OIDC(u.sub).With("name", u.name).With("email", u.email).
		With("groups", u.groups).With("scope", "idflow").With("tid", "t-one")
}

// token signs a named user's token; mods change its claims.
func (s *mcpServer) token(tb testing.TB, who string, mods ...func(authtest.Claims) authtest.Claims) string {
	tb.Helper()
	c := s.claims(tb, who)
	for _, m := range mods {
		c = m(c)
	}
	return s.Issuer.Sign(c)
}

// appToken is an app-only token (RFC 9068: sub == client_id).
func (s *mcpServer) appToken(tb testing.TB) string {
	tb.Helper()
	return s.Issuer.Sign(s.Issuer.RFC9068(mcpAppClient, mcpAppClient, "idflow"))
}

func mcpUserID(who string) string { return mcpUsers[who].sub }

// mcpBearer adds the current token to every request of the MCP client.
// The token can be swapped mid-session (a refresh, or an attacker's).
type mcpBearer struct {
	token atomic.Pointer[string]
	base  http.RoundTripper
}

func (b *mcpBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+*b.token.Load())
	return b.base.RoundTrip(r)
}

func (b *mcpBearer) set(tok string) { b.token.Store(&tok) }

// mcpTransport is the HTTP transport of the MCP clients: enough idle
// connections for parallel calls.
var mcpTransport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}

// mcpConnect opens an MCP session with the go-sdk client as the holder of
// token. The session is closed (DELETE) when the test ends.
func mcpConnect(tb testing.TB, url, token string) (*sdk.ClientSession, *mcpBearer) {
	tb.Helper()
	b := &mcpBearer{base: mcpTransport}
	b.set(token)
	client := sdk.NewClient(&sdk.Implementation{Name: "idflow-go-test-client", Version: "1.0.0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: url + "/mcp", HTTPClient: &http.Client{Transport: b}, MaxRetries: -1,
	}, nil)
	if err != nil {
		tb.Fatalf("MCP connect: %v", err)
	}
	tb.Cleanup(func() { _ = cs.Close() })
	return cs, b
}

// mcpResult is a tool result as the tests read it.
type mcpResult struct {
	IsError    bool
	Text       string
	Structured json.RawMessage
}

// decode decodes the structured result into v.
func (r mcpResult) decode(tb testing.TB, v any) {
	tb.Helper()
	if r.IsError {
		tb.Fatalf("tool error: %s", r.Text)
	}
	if err := json.Unmarshal(r.Structured, v); err != nil {
		tb.Fatalf("structured result %s: %v", r.Structured, err)
	}
}

// mcpCall calls a tool and fails the test on a protocol error (a tool
// error is returned for the test to judge).
func mcpCall(tb testing.TB, cs *sdk.ClientSession, name string, args map[string]any) mcpResult {
	tb.Helper()
	res, err := mcpTryCall(cs, name, args)
	if err != nil {
		tb.Fatalf("tools/call %s: %v", name, err)
	}
	return res
}

func mcpTryCall(cs *sdk.ClientSession, name string, args map[string]any) (mcpResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if args == nil {
		args = map[string]any{}
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return mcpResult{}, err
	}
	out := mcpResult{IsError: res.IsError}
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			out.Text += tc.Text
		}
	}
	if res.StructuredContent != nil {
		if out.Structured, err = json.Marshal(res.StructuredContent); err != nil {
			return out, err
		}
	}
	return out, nil
}

// mcpToolNames lists the tools the session sees.
func mcpToolNames(tb testing.TB, cs *sdk.ClientSession) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		tb.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, t := range res.Tools {
		names = append(names, t.Name)
	}
	return names
}

// mcpHTTP sends one raw request to /mcp (for exact statuses and headers).
// sid, when set, is sent as Mcp-Session-Id.
func mcpHTTP(tb testing.TB, method, url, token, sid, body string) (*http.Response, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url+"/mcp", rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second, Transport: mcpTransport}).Do(req)
	if err != nil {
		tb.Fatalf("%s /mcp: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s /mcp: %v", method, err)
	}
	return resp, b
}

const mcpInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// mcpRawSession opens a session over raw HTTP and returns its id.
func mcpRawSession(tb testing.TB, url, token string) string {
	tb.Helper()
	resp, body := mcpHTTP(tb, "POST", url, token, "", mcpInitialize)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		tb.Fatalf("initialize: status %d, session %q, body %s", resp.StatusCode, sid, body)
	}
	if resp, body := mcpHTTP(tb, "POST", url, token, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		tb.Fatalf("notifications/initialized: status %d, body %s", resp.StatusCode, body)
	}
	return sid
}

// mcpCallBody is a raw tools/call message.
func mcpCallBody(tb testing.TB, name string, args map[string]any) string {
	tb.Helper()
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call",
		"params": map[string]any{"name": name, "arguments": args}})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// mcpSSEResult reads the JSON-RPC result of a tools/call from an SSE or
// JSON body.
func mcpSSEResult(tb testing.TB, body []byte) (res struct {
	IsError           bool            `json:"isError"`
	StructuredContent json.RawMessage `json:"structuredContent"`
}) {
	tb.Helper()
	payload := body
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			payload = []byte(data)
		}
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  any             `json:"error"`
	}
	if err := json.Unmarshal(payload, &msg); err != nil || msg.Result == nil {
		tb.Fatalf("no JSON-RPC result in %s (%v, error %v)", body, err, msg.Error)
	}
	if err := json.Unmarshal(msg.Result, &res); err != nil {
		tb.Fatalf("result %s: %v", msg.Result, err)
	}
	return res
}

// mcpREST calls the JSON API and returns the status and body.
func mcpREST(tb testing.TB, method, url, token string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// mcpRESTJSON calls the JSON API, requires status want, and decodes into v.
func mcpRESTJSON(tb testing.TB, method, url, token string, body any, want int, v any) {
	tb.Helper()
	status, b := mcpREST(tb, method, url, token, body)
	if status != want {
		tb.Fatalf("%s %s: status %d, body %s; want %d", method, url, status, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			tb.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
}

// mcpAudit is one event of GET /api/v1/audit.
type mcpAudit struct {
	UserID   string `json:"user_id"`
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Outcome  string `json:"outcome"`
	Detail   string `json:"detail"`
}

// mcpAuditOf returns the caller's own audit events (newest first).
func mcpAuditOf(tb testing.TB, url, token string) []mcpAudit {
	tb.Helper()
	var l struct{ Items []mcpAudit }
	mcpRESTJSON(tb, "GET", url+"/api/v1/audit?limit=200", token, nil, http.StatusOK, &l)
	return l.Items
}

// mcpHasAudit reports whether events hold one with the action, outcome and
// a resource containing resource.
func mcpHasAudit(events []mcpAudit, action, outcome, resource string) bool {
	for _, e := range events {
		if e.Action == action && e.Outcome == outcome && strings.Contains(e.Resource, resource) {
			return true
		}
	}
	return false
}
