package idflow

import (
	"context"
	"time"
)

// Agent is a model with instructions and the tools (catalog names) it
// may call.
type Agent struct {
	ID           string    `json:"id"`
	UserID       string    `json:"user_id"`
	Name         string    `json:"name"`
	Instructions string    `json:"instructions"`
	Model        string    `json:"model"`
	Tools        []string  `json:"tools"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// AgentPatch changes the fields that are set.
type AgentPatch struct {
	Name         *string   `json:"name"`
	Instructions *string   `json:"instructions"`
	Model        *string   `json:"model"`
	Tools        *[]string `json:"tools"`
}

// AgentStore keeps agents.
type AgentStore interface {
	CreateAgent(ctx context.Context, p Principal, a Agent) (Agent, error)
	GetAgent(ctx context.Context, p Principal, id string) (Agent, error)
	ListAgents(ctx context.Context, p Principal, page Page) (List[Agent], error)
	UpdateAgent(ctx context.Context, p Principal, id string, patch AgentPatch) (Agent, error)
	DeleteAgent(ctx context.Context, p Principal, id string) error
}
