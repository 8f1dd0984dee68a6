package mcp

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// ToolNames are the tools, in the order tools/list shows them.
var ToolNames = []string{
	"whoami", "list_sessions", "send_message", "search_memory", "add_fact",
	"ingest_document", "start_workflow", "get_run", "list_connections",
}

// Feature is the policy feature that gates a tool (authz.Policy).
func Feature(tool string) string { return "mcp.tool." + tool }

// toolFunc runs a tool as p. Its result is answered as JSON.
type toolFunc func(ctx context.Context, p idflow.Principal, args arguments) (any, error)

type tool struct {
	def *sdk.Tool
	fn  toolFunc
}

// object is a JSON Schema of an object with the given properties.
func object(required []string, props map[string]any) map[string]any {
	return map[string]any{"type": "object", "properties": props, "required": nonNil(required)}
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

func integer(desc string, min, max int) map[string]any {
	return map[string]any{"type": "integer", "description": desc, "minimum": min, "maximum": max}
}

func (s *Server) registerTools() {
	add := func(name, title, desc string, readOnly bool, schema map[string]any, fn toolFunc) {
		def := &sdk.Tool{Name: name, Title: title, Description: desc, InputSchema: schema,
			Annotations: &sdk.ToolAnnotations{Title: title, ReadOnlyHint: readOnly, OpenWorldHint: new(bool)}}
		s.tools[name] = &tool{def: def, fn: fn}
		s.sdk.AddTool(def, s.toolHandler(name))
	}
	add("whoami", "Who am I", "The identity every tool acts as: the user of the bearer token.", true,
		object(nil, map[string]any{}), s.whoami)
	add("list_sessions", "List chat sessions", "Your chat sessions, newest first.", true,
		object(nil, map[string]any{
			"limit":  integer("page size (default 50)", 1, idflow.MaxPageLimit),
			"cursor": str("next_cursor of the previous page"),
			"app_id": str("only sessions of this app"),
		}), s.listSessions)
	add("send_message", "Send a chat message", "Sends a message to one of your chat sessions; the agent model replies. Without session_id a new session is started.", false,
		object([]string{"content"}, map[string]any{
			"session_id": str("a session id (ses_…); omit to start a new session"),
			"content":    str("the message"),
		}), s.sendMessage)
	add("search_memory", "Search memory", "Searches your facts (memory); nobody else's are considered.", true,
		object([]string{"query"}, map[string]any{
			"query": str("words to look for"),
			"limit": integer("results (default 10)", 1, 50),
		}), s.searchMemory)
	add("add_fact", "Remember a fact", "Adds a fact to your memory.", false,
		object([]string{"content"}, map[string]any{"content": str("the fact")}), s.addFact)
	add("ingest_document", "Ingest a document", "Stores a UTF-8 text document as yours; its chunks become facts in your memory.", false,
		object([]string{"filename", "content"}, map[string]any{
			"filename": str("the document's name"),
			"content":  str("the document's text"),
		}), s.ingestDocument)
	add("start_workflow", "Start a workflow run", "Starts a run of one of your workflows; it runs in the background as you. Poll it with get_run.", false,
		object([]string{"workflow_id"}, map[string]any{
			"workflow_id": str("a workflow id (wf_…)"),
			"input":       map[string]any{"description": "the run's input (any JSON)"},
			"version":     integer("a published version; 0 or absent runs the draft", 0, 1<<30),
		}), s.startWorkflow)
	add("get_run", "Get a workflow run", "One of your workflow runs: status, output, error.", true,
		object([]string{"run_id"}, map[string]any{"run_id": str("a run id (run_…)")}), s.getRun)
	add("list_connections", "List connections", "Your downstream connections (providers you connected; never their tokens).", true,
		object(nil, map[string]any{}), s.listConnections)
}

// toolHandler wraps a tool: it finds the Principal of the HTTP request that
// carried the call, applies the policy and the scopes, refuses to let an
// argument name a user, runs the tool as that Principal and audits the call
// as mcp.<tool>.
func (s *Server) toolHandler(name string) sdk.ToolHandler {
	action := "mcp." + name
	resource := "mcp_tool/" + name
	return func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		p, info, ok := principalOf(req)
		if !ok {
			// Unreachable through httpapi; refuse rather than act as anyone.
			return toolError(idflow.Errorf(idflow.EUNAUTHORIZED, "no authenticated user")), nil
		}
		ctx = idflow.WithRequestInfo(idflow.NewContext(ctx, p), info)
		if err := s.svc.Policy().Check(p, Feature(name)); err != nil {
			s.svc.Audit(ctx, p, action, resource, err)
			return toolError(err), nil
		}
		if missing := s.missingScopes(p, name); len(missing) > 0 {
			err := idflow.Errorf(idflow.EFORBIDDEN, "the tool %s needs the scope %s", name, strings.Join(missing, " "))
			s.svc.Audit(ctx, p, action, resource, err)
			return toolError(err), nil
		}
		args, err := parseArguments(req.Params.Arguments)
		if err != nil {
			return toolError(err), nil
		}
		for _, k := range args.identityKeys() {
			// Never obeyed: the tool runs as the token's user. Recorded as a
			// refused attempt to act as someone else.
			s.svc.Audit(ctx, p, action, "mcp_tool/"+name+"/argument/"+k,
				idflow.Errorf(idflow.EFORBIDDEN, "argument %q ignored: tools act as the token's user", k))
			delete(args, k)
		}
		out, err := s.tools[name].fn(ctx, p, args)
		s.svc.Audit(ctx, p, action, resource, err)
		if err != nil {
			if idflow.ErrorCode(err) == idflow.EINTERNAL {
				s.log.ErrorContext(ctx, "mcp tool failed", "tool", name, "user_id", p.UserID, "request_id", info.RequestID, "err", err)
			}
			return toolError(err), nil
		}
		return toolResult(out)
	}
}

// filterToolList hides from tools/list the tools the policy closes to the
// caller. A hidden tool called by name is refused by toolHandler.
func (s *Server) filterToolList(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		res, err := next(ctx, method, req)
		if method != "tools/list" || err != nil {
			return res, err
		}
		list, ok := res.(*sdk.ListToolsResult)
		if !ok {
			return res, err
		}
		p, _, ok := principalOf(req)
		if !ok {
			list.Tools = []*sdk.Tool{}
			return list, nil
		}
		pol := s.svc.Policy()
		list.Tools = slices.DeleteFunc(slices.Clone(list.Tools), func(t *sdk.Tool) bool { return !pol.Allowed(p, Feature(t.Name)) })
		return list, nil
	}
}

func toolResult(v any) (*sdk.CallToolResult, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}, StructuredContent: json.RawMessage(b)}, nil
}

// toolError is a tool-level error: the model sees it and may correct
// itself. The message is the caller-safe one.
func toolError(err error) *sdk.CallToolResult {
	return &sdk.CallToolResult{IsError: true,
		Content: []sdk.Content{&sdk.TextContent{Text: idflow.ErrorCode(err) + ": " + idflow.ErrorMessage(err)}}}
}

// The tools.

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

func (s *Server) whoami(_ context.Context, p idflow.Principal, _ arguments) (any, error) {
	out := identity{UserID: p.UserID, TenantID: p.TenantID, Email: p.Email, Name: p.Name,
		Roles: nonNil(p.Roles), Groups: nonNil(p.Groups), Scopes: nonNil(p.Scopes),
		Issuer: p.Issuer, Kind: string(p.Kind), AuthMethod: string(p.AuthMethod)}
	if !p.ExpiresAt.IsZero() {
		t := p.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return out, nil
}

func (s *Server) listSessions(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
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
	l, err := s.svc.ListSessions(ctx, p, idflow.SessionFilter{AppID: appID}, idflow.Page{Limit: limit, Cursor: cursor})
	if l.Items == nil {
		l.Items = []idflow.ChatSession{}
	}
	return l, err
}

type sentMessage struct {
	SessionID string         `json:"session_id"`
	Message   idflow.Message `json:"message"`
	Reply     idflow.Message `json:"reply"`
}

func (s *Server) sendMessage(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	content, err := a.str("content", true)
	if err != nil {
		return nil, err
	}
	sessionID, err := a.str("session_id", false)
	if err != nil {
		return nil, err
	}
	if sessionID == "" {
		sess, err := s.svc.CreateSession(ctx, p, service.SessionInput{Title: "MCP chat"})
		if err != nil {
			return nil, err
		}
		sessionID = sess.ID
	}
	turn, err := s.svc.SendMessage(ctx, p, sessionID, content)
	if err != nil {
		return nil, err
	}
	return sentMessage{SessionID: sessionID, Message: turn.Message, Reply: turn.Reply}, nil
}

type scoredFacts struct {
	Items []idflow.ScoredFact `json:"items"`
}

func (s *Server) searchMemory(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	query, err := a.str("query", true)
	if err != nil {
		return nil, err
	}
	limit, err := a.integer("limit", 0, 50)
	if err != nil {
		return nil, err
	}
	items, err := s.svc.SearchMemory(ctx, p, query, limit)
	if err != nil {
		return nil, err
	}
	return scoredFacts{Items: items}, nil
}

func (s *Server) addFact(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	content, err := a.str("content", true)
	if err != nil {
		return nil, err
	}
	return s.svc.CreateFact(ctx, p, content)
}

func (s *Server) ingestDocument(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	filename, err := a.str("filename", true)
	if err != nil {
		return nil, err
	}
	content, err := a.str("content", true)
	if err != nil {
		return nil, err
	}
	return s.svc.Ingest(ctx, p, service.IngestInput{Filename: filename, Content: []byte(content)})
}

func (s *Server) startWorkflow(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	if s.runs == nil {
		return nil, idflow.Errorf(idflow.EUNAVAILABLE, "workflow runs are not available on this server")
	}
	id, err := a.str("workflow_id", true)
	if err != nil {
		return nil, err
	}
	version, err := a.integer("version", 0, 1<<30)
	if err != nil {
		return nil, err
	}
	return s.runs.Start(ctx, p, id, a["input"], version)
}

func (s *Server) getRun(ctx context.Context, p idflow.Principal, a arguments) (any, error) {
	id, err := a.str("run_id", true)
	if err != nil {
		return nil, err
	}
	return s.svc.GetRun(ctx, p, id)
}

type connections struct {
	Items []idflow.Connection `json:"items"`
}

func (s *Server) listConnections(ctx context.Context, p idflow.Principal, _ arguments) (any, error) {
	if s.downstream == nil {
		return connections{Items: []idflow.Connection{}}, nil
	}
	items, err := s.downstream.ListConnections(ctx, p)
	if err != nil {
		return nil, err
	}
	if items == nil {
		items = []idflow.Connection{}
	}
	return connections{Items: items}, nil
}
