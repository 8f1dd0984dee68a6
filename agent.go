package idflow

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
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

// Agent limits.
const (
	MaxInstructionsLen = 16 << 10 // characters
	MaxTools           = 32       // tool names per agent
)

// Validate trims the agent's text fields and checks them (CheckText) and
// its tools (CheckTools): a name is required. Which models exist is
// configuration, checked by the service.
func (a *Agent) Validate() error {
	var err error
	if a.Name, err = CheckText("name", a.Name, MaxNameLen, true); err != nil {
		return err
	}
	if a.Instructions, err = CheckText("instructions", a.Instructions, MaxInstructionsLen, false); err != nil {
		return err
	}
	a.Tools, err = CheckTools(a.Tools)
	return err
}

// CheckTools checks the tools an agent names: at most MaxTools, each a
// well-formed tool name (ValidToolName). It answers them trimmed, never
// nil. A well-formed name the catalog does not (yet) offer the caller is
// kept and simply not offered (docs/AGENTS.md); a name no tool can have is
// a mistake worth a 400.
func CheckTools(tools []string) ([]string, error) {
	if len(tools) > MaxTools {
		return nil, Errorf(EINVALID, "an agent has at most %d tools", MaxTools)
	}
	out := make([]string, 0, len(tools))
	for i, t := range tools {
		v, err := CheckText(fmt.Sprintf("tools[%d]", i), t, MaxNameLen, true)
		if err != nil {
			return nil, err
		}
		if !ValidToolName(v) {
			if utf8.RuneCountInString(v) > 80 {
				v = string([]rune(v)[:80])
			}
			return nil, Errorf(EINVALID, "tools[%d] %q is not a tool name ([A-Za-z0-9_-], at most 64 characters)", i, v)
		}
		out = append(out, v)
	}
	return out, nil
}

// AgentPatch changes the fields that are set.
type AgentPatch struct {
	Name         *string   `json:"name"`
	Instructions *string   `json:"instructions"`
	Model        *string   `json:"model"`
	Tools        *[]string `json:"tools"`
}

// Validate checks the fields that are set as Agent.Validate does; a name
// cannot be set empty.
func (p *AgentPatch) Validate() error {
	var err error
	if p.Name, err = checkPatchText("name", p.Name, MaxNameLen, true); err != nil {
		return err
	}
	if p.Instructions, err = checkPatchText("instructions", p.Instructions, MaxInstructionsLen, false); err != nil {
		return err
	}
	if p.Tools != nil {
		t, err := CheckTools(*p.Tools)
		if err != nil {
			return err
		}
		p.Tools = &t
	}
	return nil
}

// AgentStore keeps agents.
type AgentStore interface {
	CreateAgent(ctx context.Context, p Principal, a Agent) (Agent, error)
	GetAgent(ctx context.Context, p Principal, id string) (Agent, error)
	ListAgents(ctx context.Context, p Principal, page Page) (List[Agent], error)
	UpdateAgent(ctx context.Context, p Principal, id string, patch AgentPatch) (Agent, error)
	DeleteAgent(ctx context.Context, p Principal, id string) error
}
