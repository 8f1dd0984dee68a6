package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// builtinNames are every built-in tool's name (docs/TOOLS.md), whether or not
// this server offers it: no source may take one.
var builtinNames = []string{
	"add_fact", "disconnect", "downstream_get", "get_run", "ingest_document", "list_connections",
	"list_sessions", "search_memory", "send_message", "start_workflow", "whoami",
}

// BuiltinNames are the names of the built-in tools.
func BuiltinNames() []string { return slices.Clone(builtinNames) }

// maxDocumentArgumentBytes bounds ingest_document's arguments: a document
// is bigger than other arguments (the HTTP API's JSON ingest takes 1 MiB).
const maxDocumentArgumentBytes = 1 << 20

// builtin is a built-in tool with its compiled schema.
type builtin struct {
	Tool
	schema    *jsonschema.Resolved
	maxArgs   int // beyond Config.MaxArgumentBytes; 0: that bound
	openWorld bool
}

// validate checks prepared arguments against the tool's JSON Schema, so
// that a model gets a precise error before anything runs.
func (b *builtin) validate(raw json.RawMessage) error {
	var inst any
	if err := json.Unmarshal(raw, &inst); err != nil { // a number beyond float64
		return idflow.Errorf(idflow.EINVALID, "the arguments could not be read: %s", clip(err.Error(), 200))
	}
	if err := b.schema.Validate(inst); err != nil {
		return idflow.Errorf(idflow.EINVALID, "the arguments do not match the schema of %s: %s", b.Name, clip(err.Error(), 300))
	}
	return nil
}

// def describes a built-in tool.
type def struct {
	name, title, desc string
	readOnly          bool
	openWorld         bool
	maxArgs           int
	required          []string
	props             map[string]any
	run               func(ctx context.Context, p idflow.Principal, a arguments) (any, error)
}

func object(required []string, props map[string]any) map[string]any {
	if required == nil {
		required = []string{}
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

func integer(desc string, min, max int) map[string]any {
	return map[string]any{"type": "integer", "description": desc, "minimum": min, "maximum": max}
}

// jsonTypes are the JSON Schema type names ("": any type).
var jsonTypes = []string{"", "string", "integer", "number", "boolean", "object", "array", "null"}

// compile turns d into a built-in, its schema checked: valid JSON Schema
// 2020-12 (as jsonschema-go resolves it), of type object, with no keyword
// jsonschema-go does not know (a typo would silently check nothing).
func compile(d def) (*builtin, error) {
	params, err := json.Marshal(object(d.required, d.props))
	if err != nil {
		return nil, fmt.Errorf("tools: schema of %s: %w", d.name, err)
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(params, &s); err != nil {
		return nil, fmt.Errorf("tools: schema of %s: %w", d.name, err)
	}
	if s.Type != "object" || len(s.Extra) > 0 {
		return nil, fmt.Errorf("tools: schema of %s: not an object, or an unknown keyword", d.name)
	}
	for name, ps := range s.Properties {
		if len(ps.Extra) > 0 || ps.Description == "" || !slices.Contains(jsonTypes, ps.Type) {
			return nil, fmt.Errorf("tools: schema of %s: property %s has an unknown keyword or type, or no description", d.name, name)
		}
	}
	for _, r := range s.Required {
		if _, ok := s.Properties[r]; !ok {
			return nil, fmt.Errorf("tools: schema of %s: required %s is not a property", d.name, r)
		}
	}
	resolved, err := s.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("tools: schema of %s: %w", d.name, err)
	}
	run := d.run
	return &builtin{
		Tool: Tool{
			ToolSpec: idflow.ToolSpec{Name: d.name, Title: d.title, Description: d.desc, Parameters: params, ReadOnly: d.readOnly},
			Run: func(ctx context.Context, p idflow.Principal, raw json.RawMessage) (any, error) {
				a, err := parseArguments(raw)
				if err != nil {
					return nil, err
				}
				return run(ctx, p, a)
			},
		},
		schema: resolved, maxArgs: d.maxArgs, openWorld: d.openWorld,
	}, nil
}

// builtins are the built-in tools d supports.
func builtins(d Deps) ([]*builtin, error) {
	b := &builtinTools{svc: d.Svc, runs: d.Runs, downstream: d.Downstream, conns: d.Connections}
	defs := []def{
		{name: "whoami", title: "Who am I", readOnly: true,
			desc:  "The identity every tool acts as: the signed-in user.",
			props: map[string]any{}, run: b.whoami},
		{name: "list_sessions", title: "List chat sessions", readOnly: true,
			desc: "Your chat sessions, newest first.",
			props: map[string]any{
				"limit":  integer("page size (default 50)", 1, idflow.MaxPageLimit),
				"cursor": str("next_cursor of the previous page"),
				"app_id": str("only sessions of this app"),
			}, run: b.listSessions},
		{name: "send_message", title: "Send a chat message",
			desc:     "Sends a message to one of your chat sessions; the agent model replies. Without session_id a new session is started.",
			required: []string{"content"},
			props: map[string]any{
				"session_id": str("a session id (ses_…); omit to start a new session"),
				"content":    str("the message"),
			}, run: b.sendMessage},
		{name: "search_memory", title: "Search memory", readOnly: true,
			desc:     "Searches your facts (memory); nobody else's are considered.",
			required: []string{"query"},
			props: map[string]any{
				"query": str("words to look for"),
				"limit": integer("results (default 10)", 1, 50),
			}, run: b.searchMemory},
		{name: "add_fact", title: "Remember a fact",
			desc:     "Adds a fact to your memory.",
			required: []string{"content"},
			props:    map[string]any{"content": str("the fact")}, run: b.addFact},
		{name: "ingest_document", title: "Ingest a document", maxArgs: maxDocumentArgumentBytes,
			desc:     "Stores a UTF-8 text document as yours; its chunks become facts in your memory.",
			required: []string{"filename", "content"},
			props: map[string]any{
				"filename": str("the document's name"),
				"content":  str("the document's text"),
			}, run: b.ingestDocument},
		{name: "get_run", title: "Get a workflow run", readOnly: true,
			desc:     "One of your workflow runs: status, output, error.",
			required: []string{"run_id"},
			props:    map[string]any{"run_id": str("a run id (run_…)")}, run: b.getRun},
		{name: "list_connections", title: "List connections", readOnly: true,
			desc:  "Your downstream connections (providers you connected; never their tokens).",
			props: map[string]any{}, run: b.listConnections},
	}
	if d.Runs != nil {
		defs = append(defs, def{name: "start_workflow", title: "Start a workflow run",
			desc:     "Starts a run of one of your workflows; it runs in the background as you. Poll it with get_run.",
			required: []string{"workflow_id"},
			props: map[string]any{
				"workflow_id": str("a workflow id (wf_…)"),
				"input":       map[string]any{"description": "the run's input (any JSON)"},
				"version":     integer("a published version; 0 or absent runs the draft", 0, 1<<30),
			}, run: b.startWorkflow})
	}
	if d.Connections != nil {
		defs = append(defs, def{name: "disconnect", title: "Disconnect a provider", openWorld: true,
			desc:     "Removes your own connection to a provider: idflow revokes your tokens at the provider (where it offers revocation) and forgets them. Connect again from the web UI or when a tool asks you to.",
			required: []string{"provider"},
			props:    map[string]any{"provider": str("a provider you connected (see list_connections)")}, run: b.disconnect})
	}
	if d.Downstream != nil {
		defs = append(defs, def{name: "downstream_get", title: "Read a downstream API", readOnly: true, openWorld: true,
			desc:     "Sends a GET to a connected provider's API with your own credential for it, and answers its status and body.",
			required: []string{"provider", "path"},
			props: map[string]any{
				"provider": str("a provider you connected (see list_connections)"),
				"path":     str("a path under the provider's API, e.g. /user"),
			}, run: b.downstreamGet})
	}
	out := make([]*builtin, 0, len(defs))
	for _, d := range defs {
		c, err := compile(d)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// builtinTools are the built-in tools' implementations. Each acts as p,
// through the service (or the runner, or the user's downstream credential),
// which scopes every object to p: another user's id answers not found.
type builtinTools struct {
	svc        *service.Service
	runs       Runs
	downstream idflow.Downstream
	conns      Connections
}

// identity is what whoami answers: the fields of GET /api/v1/me.
type identity struct {
	UserID     string     `json:"user_id"`
	TenantID   string     `json:"tenant_id"`
	Email      string     `json:"email"`
	Name       string     `json:"name"`
	Roles      []string   `json:"roles"`
	Groups     []string   `json:"groups"`
	Scopes     []string   `json:"scopes"`
	Issuer     string     `json:"issuer"`
	Kind       string     `json:"kind"`
	AuthMethod string     `json:"auth_method"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

func (b *builtinTools) whoami(_ context.Context, p idflow.Principal, _ arguments) (any, error) {
	out := identity{UserID: p.UserID, TenantID: p.TenantID, Email: p.Email, Name: p.Name,
		Roles: nonNil(p.Roles), Groups: nonNil(p.Groups), Scopes: nonNil(p.Scopes),
		Issuer: p.Issuer, Kind: string(p.Kind), AuthMethod: string(p.AuthMethod)}
	if !p.ExpiresAt.IsZero() {
		t := p.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return out, nil
}

func (b *builtinTools) listSessions(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	limit, err := a.integer("limit", 0, idflow.MaxPageLimit)
	if err != nil {
		return nil, err
	}
	cursor, err := a.str("cursor", false)
	if err != nil {
		return nil, err
	}
	appID, err := a.str("app_id", false)
	if err != nil {
		return nil, err
	}
	l, err := b.svc.ListSessions(ctx, p, idflow.SessionFilter{AppID: appID}, idflow.Page{Limit: limit, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	if l.Items == nil {
		l.Items = []idflow.ChatSession{}
	}
	return l, nil
}

type sentMessage struct {
	SessionID string         `json:"session_id"`
	Message   idflow.Message `json:"message"`
	Reply     idflow.Message `json:"reply"`
}

// sessionTitles name a session send_message starts, by channel.
var sessionTitles = map[Channel]string{ChannelMCP: "MCP chat", ChannelWorkflow: "Workflow chat", ChannelAgent: "Agent chat"}

func (b *builtinTools) sendMessage(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	content, err := a.str("content", true)
	if err != nil {
		return nil, err
	}
	sessionID, err := a.str("session_id", false)
	if err != nil {
		return nil, err
	}
	if sessionID == "" {
		sess, err := b.svc.CreateSession(ctx, p, service.SessionInput{Title: sessionTitles[channelOf(ctx)]})
		if err != nil {
			return nil, err
		}
		sessionID = sess.ID
	}
	turn, err := b.svc.SendMessage(ctx, p, sessionID, content)
	if err != nil {
		return nil, err
	}
	return sentMessage{SessionID: sessionID, Message: turn.Message, Reply: turn.Reply}, nil
}

type scoredFacts struct {
	Items []idflow.ScoredFact `json:"items"`
}

func (b *builtinTools) searchMemory(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	query, err := a.str("query", true)
	if err != nil {
		return nil, err
	}
	limit, err := a.integer("limit", 0, 50)
	if err != nil {
		return nil, err
	}
	items, err := b.svc.SearchMemory(ctx, p, query, limit)
	if err != nil {
		return nil, err
	}
	if items == nil {
		items = []idflow.ScoredFact{}
	}
	return scoredFacts{Items: items}, nil
}

func (b *builtinTools) addFact(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	content, err := a.str("content", true)
	if err != nil {
		return nil, err
	}
	return b.svc.CreateFact(ctx, p, content)
}

func (b *builtinTools) ingestDocument(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	filename, err := a.str("filename", true)
	if err != nil {
		return nil, err
	}
	content, err := a.str("content", true)
	if err != nil {
		return nil, err
	}
	return b.svc.Ingest(ctx, p, service.IngestInput{Filename: filename, Content: []byte(content)})
}

func (b *builtinTools) startWorkflow(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	id, err := a.str("workflow_id", true)
	if err != nil {
		return nil, err
	}
	version, err := a.integer("version", 0, 1<<30)
	if err != nil {
		return nil, err
	}
	return b.runs.Start(ctx, p, id, a["input"], version)
}

func (b *builtinTools) getRun(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	id, err := a.str("run_id", true)
	if err != nil {
		return nil, err
	}
	return b.svc.GetRun(ctx, p, id)
}

type connections struct {
	Items []idflow.Connection `json:"items"`
}

func (b *builtinTools) listConnections(ctx context.Context, p idflow.Principal, _ arguments) (any, error) {
	if b.downstream == nil {
		return connections{Items: []idflow.Connection{}}, nil
	}
	items, err := b.downstream.ListConnections(ctx, p)
	if err != nil {
		return nil, err
	}
	if items == nil {
		items = []idflow.Connection{}
	}
	return connections{Items: items}, nil
}

type disconnected struct {
	Provider     string `json:"provider"`
	Disconnected bool   `json:"disconnected"`
}

// disconnect removes p's own connection to a provider; a provider p has no
// connection to answers not found, as DELETE /api/v1/connections does.
func (b *builtinTools) disconnect(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	provider, err := a.str("provider", true)
	if err != nil {
		return nil, err
	}
	if err := b.conns.Disconnect(ctx, p, provider); err != nil {
		return nil, err
	}
	return disconnected{Provider: provider, Disconnected: true}, nil
}

// maxDownstreamBody bounds what downstream_get reads of an answer (the
// result is then bounded like every other).
const maxDownstreamBody = 1 << 20

// downstreamGet sends a GET to the provider's API as p, with p's own
// downstream credential (never an inbound token: a background run has
// none). A JSON answer is answered as JSON; anything else, as text.
func (b *builtinTools) downstreamGet(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	provider, err := a.str("provider", true)
	if err != nil {
		return nil, err
	}
	path, err := a.str("path", true)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil || req.URL.IsAbs() || req.URL.Host != "" {
		return nil, idflow.Errorf(idflow.EINVALID, "downstream_get: path must be a path under the provider's API")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := b.downstream.Do(ctx, p, provider, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDownstreamBody))
	if err != nil {
		return nil, idflow.WrapError(idflow.EUNAVAILABLE, "downstream_get: reading the answer failed", err)
	}
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, idflow.Errorf(idflow.EUNAVAILABLE, "downstream_get: %s answered %d", provider, resp.StatusCode)
	case resp.StatusCode >= 300: // retrying will not change the answer
		return nil, idflow.Errorf(idflow.EINVALID, "downstream_get: %s answered %d", provider, resp.StatusCode)
	}
	out := map[string]any{"status": resp.StatusCode}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Valid(body) {
		out["body"] = json.RawMessage(body)
	} else {
		out["body"] = string(body)
	}
	return out, nil
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
