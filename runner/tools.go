package runner

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// Tool is a callable of a `tool` step. It acts as p and nobody else: an
// argument naming a user is never read.
type Tool func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error)

// Tools is the registry of tools a workflow step may call.
type Tools struct {
	tools map[string]Tool
}

// NewTools returns the built-in tools: whoami, search_memory, add_fact.
func NewTools(svc *service.Service) *Tools {
	t := &Tools{tools: map[string]Tool{}}
	t.Add("whoami", func(_ context.Context, p idflow.Principal, _ json.RawMessage) (any, error) {
		return map[string]any{"user_id": p.UserID, "tenant_id": p.TenantID, "email": p.Email, "name": p.Name}, nil
	})
	t.Add("search_memory", func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error) {
		var in struct {
			Query string `json:"query"`
			Limit int    `json:"limit"`
		}
		if err := decodeArgs(args, &in); err != nil {
			return nil, err
		}
		items, err := svc.SearchMemory(ctx, p, in.Query, in.Limit)
		if err != nil {
			return nil, err
		}
		return map[string]any{"items": items}, nil
	})
	t.Add("add_fact", func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error) {
		var in struct {
			Content string `json:"content"`
		}
		if err := decodeArgs(args, &in); err != nil {
			return nil, err
		}
		return svc.CreateFact(ctx, p, in.Content)
	})
	return t
}

// Add registers a tool.
func (t *Tools) Add(name string, fn Tool) { t.tools[name] = fn }

// Names lists the registered tools.
func (t *Tools) Names() []string {
	names := make([]string, 0, len(t.tools))
	for n := range t.tools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Call runs a tool as p.
func (t *Tools) Call(ctx context.Context, p idflow.Principal, name string, args json.RawMessage) (any, error) {
	fn, ok := t.tools[name]
	if !ok {
		return nil, idflow.Errorf(idflow.EINVALID, "unknown tool %q", name)
	}
	return fn(ctx, p, args)
}

// decodeArgs reads tool arguments; fields a tool does not know (user_id
// among them) are ignored, never obeyed.
func decodeArgs(args json.RawMessage, dst any) error {
	if len(args) == 0 || string(args) == "null" {
		return nil
	}
	if err := json.Unmarshal(args, dst); err != nil {
		return idflow.WrapError(idflow.EINVALID, "tool arguments must be a JSON object", err)
	}
	return nil
}
