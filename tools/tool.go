// Package tools is idflow's one tool catalog: the built-in tools and the
// tools of downstream MCP servers, offered to agent turns, workflow `tool`
// steps and /mcp alike. Every call runs as the caller's Principal; see
// docs/TOOLS.md.
package tools

import (
	"context"
	"encoding/json"

	"github.com/idflow/idflow"
)

// Tool is one entry of the catalog. Run acts as p and nobody else: it
// never reads a user id from args (the catalog strips such arguments before
// Run sees them).
type Tool struct {
	idflow.ToolSpec
	Run func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error)
}

// Source adds tools that are not built in (a downstream MCP server's). It
// answers the tools p may use from it; a source that is down answers an
// error quickly and never holds up the others.
type Source interface {
	Tools(ctx context.Context, p idflow.Principal) ([]Tool, error)
}

// Finder is a Source that can answer one of the tools p may use from it by
// name (found false when it has none of that name) without listing them
// all: a call's lookup then costs one tool's checks, not the catalog's.
type Finder interface {
	Source
	Tool(ctx context.Context, p idflow.Principal, name string) (t Tool, found bool, err error)
}
