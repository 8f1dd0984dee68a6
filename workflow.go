package idflow

import (
	"context"
	"encoding/json"
	"time"
)

// Workflow statuses.
const (
	WorkflowDraft     = "draft"
	WorkflowPublished = "published"
)

// Workflow is a draft that may have published, frozen versions.
type Workflow struct {
	ID          string     `json:"id"`
	UserID      string     `json:"user_id"`
	Name        string     `json:"name"`
	Definition  Definition `json:"definition"`
	Status      string     `json:"status"`
	Version     int        `json:"version"` // latest published version, 0 when never published
	PublishedAt *time.Time `json:"published_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Step types of a workflow definition.
const (
	StepPrompt       = "prompt"
	StepMemorySearch = "memory_search"
	StepTool         = "tool"
	StepWait         = "wait"
)

// Step is one step of a definition; its Type says which fields apply.
type Step struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Prompt string          `json:"prompt,omitempty"`
	Query  string          `json:"query,omitempty"`
	Limit  int             `json:"limit,omitempty"`
	Tool   string          `json:"tool,omitempty"`
	Args   json.RawMessage `json:"args,omitempty"`
	Ms     int             `json:"ms,omitempty"`
}

// Definition is what a workflow runs: its steps, in order.
type Definition struct {
	Steps []Step `json:"steps"`
}

// WorkflowStore keeps workflows: drafts and their published versions.
type WorkflowStore interface {
	CreateWorkflow(ctx context.Context, p Principal, w Workflow) (Workflow, error)
	GetWorkflow(ctx context.Context, p Principal, id string) (Workflow, error)
	ListWorkflows(ctx context.Context, p Principal, page Page) (List[Workflow], error)
	// ReplaceWorkflow replaces the draft's name and definition.
	ReplaceWorkflow(ctx context.Context, p Principal, id string, name string, def Definition) (Workflow, error)
	DeleteWorkflow(ctx context.Context, p Principal, id string) error
	// PublishWorkflow freezes the current draft as the next version.
	PublishWorkflow(ctx context.Context, p Principal, id string) (Workflow, error)
	GetWorkflowVersion(ctx context.Context, p Principal, id string, version int) (Definition, error)
}
