package runner

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"

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

// maxDownstreamBody bounds what downstream_get reads of an answer.
const maxDownstreamBody = 1 << 20

// DownstreamGet is the downstream_get tool: {provider, path} sends a GET to
// the provider's API as p, with p's own downstream credential (never the
// run's trigger token: a background run has none). A JSON answer is the
// step's output as JSON; anything else, as text.
func DownstreamGet(d idflow.Downstream) Tool {
	return func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error) {
		var in struct {
			Provider string `json:"provider"`
			Path     string `json:"path"`
		}
		if err := decodeArgs(args, &in); err != nil {
			return nil, err
		}
		if in.Provider == "" || in.Path == "" {
			return nil, idflow.Errorf(idflow.EINVALID, "downstream_get needs provider and path")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.Path, nil)
		if err != nil || req.URL.IsAbs() || req.URL.Host != "" {
			return nil, idflow.Errorf(idflow.EINVALID, "downstream_get: path must be a path under the provider's API")
		}
		req.Header.Set("Accept", "application/json")
		resp, err := d.Do(ctx, p, in.Provider, req)
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
			return nil, idflow.Errorf(idflow.EUNAVAILABLE, "downstream_get: %s answered %d", in.Provider, resp.StatusCode)
		case resp.StatusCode >= 300: // retrying will not change the answer
			return nil, idflow.Errorf(idflow.EINVALID, "downstream_get: %s answered %d", in.Provider, resp.StatusCode)
		}
		out := map[string]any{"status": resp.StatusCode}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Valid(body) {
			out["body"] = json.RawMessage(body)
		} else {
			out["body"] = string(body)
		}
		return out, nil
	}
}
