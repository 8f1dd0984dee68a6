package idflow

import (
	"context"
	"encoding/json"
	"fmt"
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

// Definition limits.
const (
	MaxSteps        = 100            // steps per definition
	MaxStepIDLen    = 64             // bytes
	MaxStepArgsSize = 64 << 10       // bytes of a tool step's args
	MaxStepWaitMs   = 10 * 60 * 1000 // a wait step's ms
)

// Validate checks a definition: at most MaxSteps steps, each with a unique
// id and the fields its type needs, within their bounds.
func (d Definition) Validate() error {
	if len(d.Steps) > MaxSteps {
		return Errorf(EINVALID, "a workflow has at most %d steps", MaxSteps)
	}
	seen := map[string]bool{}
	for i, st := range d.Steps {
		if st.ID == "" {
			return Errorf(EINVALID, "steps[%d].id is required", i)
		}
		if len(st.ID) > MaxStepIDLen {
			return Errorf(EINVALID, "steps[%d].id is too long", i)
		}
		if seen[st.ID] {
			return Errorf(EINVALID, "steps[%d].id %q is used twice", i, st.ID)
		}
		seen[st.ID] = true
		var err error
		switch st.Type {
		case StepPrompt:
			_, err = CheckText(fmt.Sprintf("steps[%d].prompt", i), st.Prompt, MaxMessageLen, true)
		case StepMemorySearch:
			_, err = CheckText(fmt.Sprintf("steps[%d].query", i), st.Query, MaxQueryLen, true)
		case StepTool:
			_, err = CheckText(fmt.Sprintf("steps[%d].tool", i), st.Tool, MaxNameLen, true)
			if err == nil && len(st.Args) > MaxStepArgsSize {
				err = Errorf(EINVALID, "steps[%d].args is too large", i)
			}
		case StepWait:
			if st.Ms < 0 || st.Ms > MaxStepWaitMs {
				err = Errorf(EINVALID, "steps[%d].ms must be within 0..%d", i, MaxStepWaitMs)
			}
		default:
			err = Errorf(EINVALID, "steps[%d].type must be prompt, memory_search, tool or wait", i)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Validate trims the workflow's name and checks it (required, CheckText)
// and its definition.
func (w *Workflow) Validate() error {
	var err error
	if w.Name, err = CheckText("name", w.Name, MaxNameLen, true); err != nil {
		return err
	}
	return w.Definition.Validate()
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
