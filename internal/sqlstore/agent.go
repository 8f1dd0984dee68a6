package sqlstore

import (
	"context"
	"encoding/json"

	"github.com/idflow/idflow"
)

const (
	agentCols     = `id, user_id, name, instructions, model, tools, created_at, updated_at`
	ListAgentsSQL = `SELECT ` + agentCols + ` FROM agents WHERE user_id = $1`
)

func scanAgent(r Row) (idflow.Agent, error) {
	var a idflow.Agent
	var tools string
	if err := r.Scan(&a.ID, &a.UserID, &a.Name, &a.Instructions, &a.Model, &tools, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return a, err
	}
	var err error
	a.Tools, err = decodeNames(tools)
	return a, err
}

func agentKey(a idflow.Agent) Cursor { return createdKey(a.CreatedAt, a.ID) }

// namesJSON is a list of names (an agent's tools, a connection's scopes)
// as stored: a JSON array, never null.
func namesJSON(names []string) string {
	if names == nil {
		names = []string{}
	}
	b, _ := json.Marshal(names) // a []string always encodes
	return string(b)
}

// decodeNames reads a stored list of names; it is never nil, whatever was
// stored (a null included).
func decodeNames(s string) ([]string, error) {
	var names []string
	if err := json.Unmarshal([]byte(s), &names); err != nil {
		return []string{}, err
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

func (s *Store) CreateAgent(ctx context.Context, p idflow.Principal, a idflow.Agent) (idflow.Agent, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Agent{}, err
	}
	now := s.clock.now()
	a = idflow.Agent{ID: idflow.NewID(idflow.PrefixAgent), UserID: owner, Name: a.Name, Instructions: a.Instructions,
		Model: a.Model, Tools: append([]string{}, a.Tools...), CreatedAt: now, UpdatedAt: now}
	err = s.write(ctx, "create agent", owner, func(tx Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO agents (`+agentCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			a.ID, a.UserID, a.Name, a.Instructions, a.Model, namesJSON(a.Tools), now, now)
		return err
	})
	if err != nil {
		return idflow.Agent{}, err
	}
	return a, nil
}

func (s *Store) GetAgent(ctx context.Context, p idflow.Principal, id string) (idflow.Agent, error) {
	return getOwned(ctx, s, p, "agent", `SELECT `+agentCols+` FROM agents WHERE user_id = $1 AND id = $2`, scanAgent, id)
}

func (s *Store) ListAgents(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Agent], error) {
	return listOwned(ctx, s, p, "list agents", ListAgentsSQL, nil, ByCreated, page, scanAgent, agentKey)
}

func (s *Store) UpdateAgent(ctx context.Context, p idflow.Principal, id string, patch idflow.AgentPatch) (idflow.Agent, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Agent{}, err
	}
	var tools any
	if patch.Tools != nil {
		tools = namesJSON(*patch.Tools)
	}
	var a idflow.Agent
	err = s.write(ctx, "update agent", owner, func(tx Tx) error {
		a, err = getOne(ctx, tx, "agent", `UPDATE agents SET name = COALESCE($1, name), instructions = COALESCE($2, instructions),
			model = COALESCE($3, model), tools = COALESCE($4, tools), updated_at = $5
			WHERE user_id = $6 AND id = $7 RETURNING `+agentCols,
			scanAgent, optional(patch.Name), optional(patch.Instructions), optional(patch.Model), tools, s.clock.now(), owner, id)
		return err
	})
	return a, err
}

// DeleteAgent deletes the agent; sessions that reference it are kept with
// the reference cleared, as for apps.
func (s *Store) DeleteAgent(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete agent", owner, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE sessions SET agent_id = NULL WHERE user_id = $1 AND agent_id = $2`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "agents", "agent", owner, id)
	})
}
