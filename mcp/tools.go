package mcp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/tools"
	"github.com/idflow/idflow/vault"
)

// Catalog is the tool catalog /mcp lists and calls (tools.Catalog): the
// same tools, policy and audit as agent turns and workflow steps.
type Catalog interface {
	idflow.ToolCatalog
	// OpenWorld reports whether a tool reaches beyond idflow's own data.
	OpenWorld(name string) bool
}

// serveTools answers tools/list and tools/call from the catalog, for the
// Principal of the HTTP request that carried each: the list is the
// caller's own (policy and downstream groups), computed per request, and
// a call runs as that caller. No tool is registered with the SDK, so no
// list or handler is ever shared between users.
func (s *Server) serveTools(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		switch method {
		case "tools/list":
			return s.listTools(ctx, req)
		case "tools/call":
			call, ok := req.(*sdk.CallToolRequest)
			if !ok || call.Params == nil {
				return nil, errUnexpectedRequest
			}
			return s.callTool(ctx, call)
		}
		return next(ctx, method, req)
	}
}

var errUnexpectedRequest = idflow.Errorf(idflow.EINVALID, "unexpected request")

func (s *Server) listTools(ctx context.Context, req sdk.Request) (*sdk.ListToolsResult, error) {
	// tools/list is per user: no client or intermediary may reuse one
	// user's list for another.
	res := &sdk.ListToolsResult{Tools: []*sdk.Tool{}, Cacheable: sdk.Cacheable{TTLMs: 0, CacheScope: "private"}}
	p, _, ok := principalOf(req)
	if !ok {
		return res, nil
	}
	specs, err := s.tools.ToolsFor(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, spec := range specs {
		openWorld := s.tools.OpenWorld(spec.Name)
		res.Tools = append(res.Tools, &sdk.Tool{
			Name: spec.Name, Title: spec.Title, Description: spec.Description, InputSchema: spec.Parameters,
			Annotations: &sdk.ToolAnnotations{Title: spec.Title, ReadOnlyHint: spec.ReadOnly, OpenWorldHint: &openWorld},
		})
	}
	return res, nil
}

// callTool runs a tools/call as the Principal of the request that carried
// it, after the per-tool scopes of IDFLOW_MCP_TOOL_SCOPES; the catalog
// applies the policy, strips identity arguments and audits the call. The
// only protocol error it answers is a URL elicitation (see connectURL).
func (s *Server) callTool(ctx context.Context, req *sdk.CallToolRequest) (res sdk.Result, err error) {
	p, info, ok := principalOf(req)
	if !ok {
		// Unreachable through httpapi; refuse rather than act as anyone.
		return toolError("unauthorized: no authenticated user"), nil
	}
	name := req.Params.Name
	ctx = tools.WithChannel(idflow.WithRequestInfo(idflow.NewContext(ctx, p), info), tools.ChannelMCP)
	if missing := s.missingScopes(p, name); len(missing) > 0 {
		err := idflow.Errorf(idflow.EFORBIDDEN, "the tool %s needs the scope %s", name, strings.Join(missing, " "))
		s.svc.Audit(ctx, p, tools.ActionCall, "tool/"+name, err)
		return toolError(idflow.ErrorCode(err) + ": " + idflow.ErrorMessage(err)), nil
	}
	defer func() {
		// The SDK runs calls on goroutines of its own, which nothing else
		// would recover: a tool's bug must not end the process.
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "mcp tool panicked", "tool", name, "user_id", p.UserID, "request_id", info.RequestID, "panic", r)
			res, err = toolError("internal: internal error"), nil
		}
	}()
	out := s.tools.CallTool(ctx, p, idflow.ToolCall{Name: name, Arguments: req.Params.Arguments}, nil)
	if !out.OK {
		if elicit := s.connectURL(ctx, req, p, name, out.Err); elicit != nil {
			return nil, elicit
		}
		return toolError(out.Content), nil
	}
	result := &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: out.Content}}}
	if strings.HasPrefix(out.Content, "{") {
		// structuredContent must be an object (MCP); every built-in answers one.
		result.StructuredContent = json.RawMessage(out.Content)
	}
	return result, nil
}

// Connector starts a user's connect flow (connections.Manager): the state
// is bound to p, so only p's own browser session can complete it.
type Connector interface {
	Connect(ctx context.Context, p idflow.Principal, provider string) (string, error)
}

// connectURL answers, for a call that failed because p lacks (or must
// renew) a downstream connection, the URL-mode elicitation of MCP
// 2025-11-25 (JSON-RPC error -32042) carrying a connect URL started for p:
// the client shows it, p connects in the browser, and the call can be
// retried. It answers nil — the caller then sends the plain tool error,
// which says how to connect — when the client did not declare URL
// elicitation, when the failure is not about a connection, or when the
// flow cannot be started.
func (s *Server) connectURL(ctx context.Context, req *sdk.CallToolRequest, p idflow.Principal, tool string, cause error) error {
	provider, needed := vault.ProviderToConnect(cause)
	if !needed || s.connect == nil {
		return nil
	}
	caps := req.ClientCapabilities()
	if caps == nil || caps.Elicitation == nil || caps.Elicitation.URL == nil {
		return nil
	}
	u, err := s.connect.Connect(ctx, p, provider)
	if err != nil {
		s.log.WarnContext(ctx, "mcp: the connect flow could not be started; answering the tool error", "provider", provider, "user_id", p.UserID, "err", err)
		return nil
	}
	verb := "Connect"
	if errors.Is(cause, vault.ErrNeedsConsent) {
		verb = "Reconnect"
	}
	return sdk.URLElicitationRequiredError([]*sdk.ElicitParams{{
		Mode: "url", URL: u, ElicitationID: "connect-" + rand.Text(),
		Message: fmt.Sprintf("%s %s: the tool %s acts with your own %s account. Open the link in the browser where you are signed in to idflow, then call the tool again.",
			verb, provider, tool, provider),
	}})
}

// toolError is a tool-level error: the model sees it and may correct
// itself. text is the caller-safe "<code>: <message>".
func toolError(text string) *sdk.CallToolResult {
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: text}}}
}
