package verify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
)

// MCP (Streamable HTTP at /mcp), spoken as raw JSON-RPC so that every
// request and answer can go into the report as it was.

const (
	mcpProtocol   = "2025-06-18"
	mcpInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + mcpProtocol + `","capabilities":{},"clientInfo":{"name":"idflow-verify","version":"1"}}}`
)

// mcpSession is a session a caller opened, ended at cleanup.
type mcpSession struct {
	c  *caller
	id string
}

// rpcAnswer is one JSON-RPC answer from /mcp.
type rpcAnswer struct {
	r      *response
	result json.RawMessage
	err    json.RawMessage
}

// toolResult is a tools/call result.
type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Structured json.RawMessage `json:"structuredContent"`
	IsError    bool            `json:"isError"`
}

func (t toolResult) text() string {
	var parts []string
	for _, c := range t.Content {
		parts = append(parts, c.Text)
	}
	return strings.Join(parts, "\n")
}

// mcpSend posts one JSON-RPC message on session sid ("" for none) and
// reads the answer with the same id, from JSON or from an SSE stream.
func (v *verifier) mcpSend(ctx context.Context, c *caller, sid, method string, params any, notification bool) (*rpcAnswer, error) {
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if params != nil {
		msg["params"] = params
	}
	v.rpcID++
	id := v.rpcID
	if !notification {
		msg["id"] = id
	}
	hdrs := []header{{"Accept", "application/json, text/event-stream"}}
	if sid != "" {
		hdrs = append(hdrs, header{"Mcp-Session-Id", sid}, header{"Mcp-Protocol-Version", mcpProtocol})
	}
	r, err := v.cl.do(ctx, c, "POST", "/mcp", msg, hdrs...)
	if err != nil {
		return &rpcAnswer{r: r}, err
	}
	a := &rpcAnswer{r: r}
	if notification || r.status != http.StatusOK {
		return a, nil
	}
	for _, m := range rpcMessages(r) {
		var env struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if json.Unmarshal(m, &env) == nil && string(env.ID) == fmt.Sprint(id) {
			a.result, a.err = env.Result, env.Error
			return a, nil
		}
	}
	return a, fmt.Errorf("/mcp %s: no JSON-RPC answer with id %d", method, id)
}

// rpcMessages are the JSON-RPC messages of an answer: the body itself, or
// the data of each server-sent event.
func rpcMessages(r *response) [][]byte {
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if mt != "text/event-stream" {
		return [][]byte{r.body}
	}
	var out [][]byte
	var data []string
	flush := func() {
		if len(data) > 0 {
			out = append(out, []byte(strings.Join(data, "\n")))
			data = nil
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(make([]byte, 64<<10), maxBody)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if d, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(d, " "))
		}
	}
	flush()
	return out
}

// toolCase says how to call a built-in tool as another user: with A's
// object (param: its kind) and an argument naming A (userID).
type toolCase struct {
	param    string // the kind of A's object the tool names, "" none
	notFound bool   // naming A's object must answer not_found
	creates  string // the kind of object the tool creates, as the caller
	whoami   bool
	args     func(id, userID, word string) map[string]any
}

// toolCases knows the built-in tools of docs/TOOLS.md; a tool without a
// case (a downstream server's, or a new one) is listed as not called.
var toolCases = map[string]toolCase{
	"whoami": {whoami: true, args: func(_, u, _ string) map[string]any { return map[string]any{"user_id": u, "as_user": u} }},
	"list_sessions": {param: "app", args: func(id, u, _ string) map[string]any {
		return map[string]any{"app_id": id, "user_id": u, "limit": 200}
	}},
	"send_message": {param: "session", notFound: true, args: func(id, u, _ string) map[string]any {
		return map[string]any{"session_id": id, "content": "What is in this chat?", "owner": u}
	}},
	"search_memory": {args: func(_, u, w string) map[string]any {
		return map[string]any{"query": w, "limit": 50, "user_id": u}
	}},
	"add_fact": {creates: "fact", args: func(_, u, w string) map[string]any {
		return map[string]any{"content": "idflow verify probe fact " + w, "user_id": u}
	}},
	"ingest_document": {creates: "document", args: func(_, u, w string) map[string]any {
		return map[string]any{"filename": "idflow-verify-probe.txt", "content": "idflow verify probe document " + w, "owner_id": u}
	}},
	"get_run": {param: "run", notFound: true, args: func(id, u, _ string) map[string]any {
		return map[string]any{"run_id": id, "on_behalf_of": u}
	}},
	"start_workflow": {param: "workflow", notFound: true, args: func(id, u, _ string) map[string]any {
		return map[string]any{"workflow_id": id, "input": map[string]any{"impersonate": u}}
	}},
	"list_connections": {args: func(_, u, _ string) map[string]any { return map[string]any{"user_id": u} }},
}

// mcpTasks: A's session and its own tools (the control); then each user
// caller's tools with A's ids; then A's session used by the others.
func (v *verifier) mcpTasks() []task {
	if !v.hasRoute("POST", "/mcp") {
		return []task{{phase: "mcp", label: "no /mcp", run: func(context.Context) {
			v.note("/openapi.json documents no /mcp: no MCP tool was checked.")
		}}}
	}
	out := []task{{phase: "mcp", label: "A's own MCP session", run: v.mcpControl}}
	for _, c := range v.callers {
		if c.role == roleUser || c.role == roleAdmin {
			out = append(out, task{phase: "mcp", label: "MCP tools as " + c.Name, run: func(ctx context.Context) { v.mcpProbe(ctx, c) }})
		}
	}
	return append(out, task{phase: "mcp", label: "A's MCP session used by others", run: v.mcpHijack})
}

// mcpOpen initializes a session as c, returning its id.
func (v *verifier) mcpOpen(ctx context.Context, c *caller) (string, *rpcAnswer, error) {
	a, err := v.mcpSend(ctx, c, "", "initialize", map[string]any{"protocolVersion": mcpProtocol, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "idflow-verify", "version": "1"}}, false)
	if err != nil {
		return "", a, err
	}
	sid := a.r.header.Get("Mcp-Session-Id")
	if a.r.status != http.StatusOK || sid == "" || a.result == nil {
		return "", a, fmt.Errorf("initialize answered %s without a session", a.r)
	}
	v.mcpSessions = append(v.mcpSessions, mcpSession{c: c, id: sid})
	n, err := v.mcpSend(ctx, c, sid, "notifications/initialized", nil, true)
	if err != nil {
		return sid, n, err
	}
	if n.r.status >= 300 {
		return sid, n, fmt.Errorf("notifications/initialized answered %s", n.r)
	}
	return sid, a, nil
}

// mcpCall calls a tool on session sid.
func (v *verifier) mcpCall(ctx context.Context, c *caller, sid, name string, args map[string]any) (toolResult, *rpcAnswer, error) {
	var tr toolResult
	a, err := v.mcpSend(ctx, c, sid, "tools/call", map[string]any{"name": name, "arguments": args}, false)
	if err != nil {
		return tr, a, err
	}
	if a.r.status != http.StatusOK {
		return tr, a, fmt.Errorf("tools/call %s answered %s", name, a.r)
	}
	if a.err != nil {
		tr.IsError = true
		tr.Content = append(tr.Content, struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{"text", "JSON-RPC error " + string(a.err)})
		return tr, a, nil
	}
	if err := json.Unmarshal(a.result, &tr); err != nil {
		return tr, a, fmt.Errorf("tools/call %s: the result is not a tool result: %w", name, err)
	}
	return tr, a, nil
}

// mcpControl: A opens a session and reads its own run through get_run, so
// that another user's not_found proves something.
func (v *verifier) mcpControl(ctx context.Context) {
	target := "MCP tools/call get_run"
	sid, a, err := v.mcpOpen(ctx, v.a)
	if err != nil {
		v.fail("controls", "MCP initialize", nameA, "A opens an MCP session", v.cl.red.String(err.Error()), rpcEvidence(a))
		return
	}
	v.fx.mcpSession = sid
	tr, ans, err := v.mcpCall(ctx, v.a, sid, "get_run", map[string]any{"run_id": v.fx.ids["run"]})
	expected := "A's get_run answers A's run"
	switch {
	case err != nil:
		v.fail("controls", target, nameA, expected, v.cl.red.String(err.Error()), rpcEvidence(ans))
	case tr.IsError || !bytes.Contains(tr.Structured, []byte(v.fx.ids["run"])):
		v.fail("controls", target, nameA, expected, "it does not: "+firstLine(tr.text()), rpcEvidence(ans))
	default:
		v.pass("controls", target, nameA, expected, "A's run")
	}
}

func rpcEvidence(a *rpcAnswer) []Exchange {
	if a == nil || a.r == nil {
		return nil
	}
	return []Exchange{a.r.ex}
}

// mcpProbe calls every tool c is offered with A's ids and an argument
// naming A.
func (v *verifier) mcpProbe(ctx context.Context, c *caller) {
	sid, a, err := v.mcpOpen(ctx, c)
	if err != nil {
		v.fail("mcp", "MCP initialize", c.Name, "a session of the caller's own", v.cl.red.String(err.Error()), rpcEvidence(a))
		return
	}
	list, err := v.mcpSend(ctx, c, sid, "tools/list", map[string]any{}, false)
	if err != nil || list.result == nil {
		v.fail("mcp", "MCP tools/list", c.Name, "the caller's tools", errText(v, err, list), rpcEvidence(list))
		return
	}
	var tools struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	_ = json.Unmarshal(list.result, &tools)
	v.verdict("mcp", "MCP tools/list", c, "the caller's tools, nothing of A's", fmt.Sprintf("%d tools", len(tools.Tools)),
		v.leaks(c, list.r, scopeOwn), rpcEvidence(list))
	var names []string
	for _, t := range tools.Tools {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	for _, name := range names {
		tc, ok := toolCases[name]
		target := "MCP tools/call " + name
		if !ok {
			v.skip("mcp", target, c.Name, "no case for this tool (a downstream server's, or one this verifier does not know): not called")
			continue
		}
		v.mcpTool(ctx, c, sid, name, tc)
	}
}

func errText(v *verifier, err error, a *rpcAnswer) string {
	if err != nil {
		return v.cl.red.String(err.Error())
	}
	if a != nil && a.r != nil {
		return a.r.String() + " " + firstLine(v.cl.red.String(string(a.err)))
	}
	return "no answer"
}

// mcpTool calls one tool naming A's object (and, for comparison, a missing
// one of the same shape), with an identity argument naming A.
func (v *verifier) mcpTool(ctx context.Context, c *caller, sid, name string, tc toolCase) {
	target := "MCP tools/call " + name
	id := ""
	if tc.param != "" {
		id = v.fx.ids[tc.param]
	}
	tr, a, err := v.mcpCall(ctx, c, sid, name, tc.args(id, v.a.userID, v.fx.word))
	if err != nil {
		v.fail("mcp", target, c.Name, "an answer of the caller's own", v.cl.red.String(err.Error()), rpcEvidence(a))
		return
	}
	problems := v.leaks(c, a.r, scopeOwn)
	evidence := rpcEvidence(a)
	expected := "the caller's own answer, nothing of A's"
	got := "ok"
	if tr.IsError {
		got = "error: " + firstLine(tr.text())
	}
	if tc.notFound {
		expected = "not_found, exactly like a missing " + tc.param
		if !tr.IsError || !strings.HasPrefix(tr.text(), "not_found") {
			problems = append(problems, fmt.Sprintf("naming A's %s answered %q; want not_found", tc.param, firstLine(tr.text())))
		}
	}
	if tc.param != "" {
		mt, ma, err := v.mcpCall(ctx, c, sid, name, tc.args(randomLike(id), v.a.userID, v.fx.word))
		if err != nil {
			problems = append(problems, "the same call naming a missing "+tc.param+": "+v.cl.red.String(err.Error()))
		} else {
			evidence = append(evidence, rpcEvidence(ma)...)
			if mt.IsError != tr.IsError || mt.text() != tr.text() || !bytes.Equal(mt.Structured, tr.Structured) {
				problems = append(problems, fmt.Sprintf("naming A's %s answers differently from naming a missing one: the tool tells them apart", tc.param))
			}
		}
	}
	var made object
	_ = json.Unmarshal(tr.Structured, &made)
	if tc.whoami && made.UserID != c.userID {
		problems = append(problems, fmt.Sprintf("whoami names user %q, not the caller: the argument naming A was obeyed", made.UserID))
	}
	if tc.creates != "" && !tr.IsError {
		expected = "a " + tc.creates + " of the caller's own (the argument naming A is ignored)"
		if made.UserID != c.userID {
			problems = append(problems, fmt.Sprintf("the new %s belongs to %q, not the caller: the argument naming A was obeyed", tc.creates, made.UserID))
		}
		if made.ID != "" {
			owner := c
			if made.UserID == v.a.userID {
				owner = v.a
			}
			v.leftovers = append(v.leftovers, cleanup{c: owner, what: c.Name + "'s probe " + tc.creates + " " + made.ID, path: deletePath(tc.creates, made.ID)})
		}
	}
	v.verdict("mcp", target, c, expected, got, problems, evidence)
}

// mcpHijack: the others post to A's MCP session. A session belongs to the
// user who opened it: 404, like a session that does not exist.
func (v *verifier) mcpHijack(ctx context.Context) {
	target := "MCP session of A"
	if v.fx.mcpSession == "" {
		for _, c := range v.callers {
			if c.role == roleUser || c.role == roleAdmin {
				v.skip("mcp", target, c.Name, "A could not open an MCP session (see the controls)")
			}
		}
		return
	}
	for _, c := range v.callers {
		if c.role != roleUser && c.role != roleAdmin {
			continue
		}
		a, err := v.mcpSend(ctx, c, v.fx.mcpSession, "tools/call", map[string]any{"name": "whoami", "arguments": map[string]any{}}, false)
		if err != nil && (a == nil || a.r == nil || a.r.status == http.StatusOK) {
			v.fail("mcp", target, c.Name, "404", v.cl.red.String(err.Error()), rpcEvidence(a))
			continue
		}
		m, err := v.mcpSend(ctx, c, randomLike(v.fx.mcpSession), "tools/call", map[string]any{"name": "whoami", "arguments": map[string]any{}}, false)
		if err != nil && (m == nil || m.r == nil) {
			v.fail("mcp", target, c.Name, "404", v.cl.red.String(err.Error()), rpcEvidence(m))
			continue
		}
		var problems []string
		if a.r.status != http.StatusNotFound {
			problems = append(problems, fmt.Sprintf("%s posted on A's MCP session and got %s; want 404", c.Label, a.r))
		}
		problems = append(problems, v.leaks(c, a.r, scopeOwn)...)
		problems = append(problems, sameAnswer(a.r, m.r)...)
		v.verdict("mcp", target, c, "404, like a session that does not exist", a.r.String(), problems, append(rpcEvidence(a), rpcEvidence(m)...))
	}
}
