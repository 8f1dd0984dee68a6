package idflow

import (
	"context"
	"encoding/json"
	"regexp"
)

var toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToolName reports whether name can be a tool's: 1 to 64 of
// [A-Za-z0-9_-].
func ValidToolName(name string) bool { return toolNameRE.MatchString(name) }

// ToolSpec describes a tool to a model or an MCP client.
type ToolSpec struct {
	Name        string          `json:"name"`
	Title       string          `json:"title,omitempty"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"` // JSON Schema of the arguments object
	ReadOnly    bool            `json:"read_only,omitempty"`
	// Server names the downstream MCP server a tool comes from; empty for
	// a built-in tool (the default agent offers only those).
	Server string `json:"server,omitempty"`
}

// ToolCall is a request to run a tool, as a model or a workflow step makes it.
type ToolCall struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"` // a JSON object, as the caller sent it
}

// ToolResult is what a tool call answered. A failed call is a result too
// (OK false, Content the error's message): a model reads it and goes on.
type ToolResult struct {
	ToolCallID string `json:"id"`
	Name       string `json:"name"`
	OK         bool   `json:"ok"`
	Content    string `json:"content"` // JSON text when OK, the error message otherwise; bounded
	Err        error  `json:"-"`       // the typed error when !OK
}

// ToolCatalog is every tool idflow can run — built in, or on a downstream
// MCP server — for agents, workflow steps and /mcp alike. Both methods act
// as p and nobody else.
type ToolCatalog interface {
	// ToolsFor lists the tools p may use, sorted by name.
	ToolsFor(ctx context.Context, p Principal) ([]ToolSpec, error)
	// CallTool runs call as p. offered, when not nil, is the set of tool
	// names the caller was offered: any other name is refused, never run.
	CallTool(ctx context.Context, p Principal, call ToolCall, offered []string) ToolResult
}

type inToolCallKey struct{}

// WithinToolCall marks ctx as that of a running tool. The catalog refuses
// every call made with such a context (tools cannot call tools), and an
// agent turn started inside one (the send_message tool) offers no tools,
// so nothing recurses.
func WithinToolCall(ctx context.Context) context.Context {
	return context.WithValue(ctx, inToolCallKey{}, true)
}

// InToolCall reports whether ctx is that of a running tool.
func InToolCall(ctx context.Context) bool {
	in, _ := ctx.Value(inToolCallKey{}).(bool)
	return in
}
