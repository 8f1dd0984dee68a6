package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/idflow/idflow"
)

const (
	appCols     = `id, user_id, name, description, created_at, updated_at`
	listAppsSQL = `SELECT ` + appCols + ` FROM apps WHERE user_id = ?`
)

func scanApp(r rowScanner) (idflow.App, error) {
	var a idflow.App
	var created, updated int64
	err := r.Scan(&a.ID, &a.UserID, &a.Name, &a.Description, &created, &updated)
	a.CreatedAt, a.UpdatedAt = fromNanos(created), fromNanos(updated)
	return a, err
}

func appKey(a idflow.App) cursor { return cursor{Key: nanos(a.CreatedAt), ID: a.ID} }

func (db *DB) CreateApp(ctx context.Context, p idflow.Principal, a idflow.App) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	now := db.now()
	a = idflow.App{ID: idflow.NewID(idflow.PrefixApp), UserID: owner, Name: a.Name, Description: a.Description,
		CreatedAt: now, UpdatedAt: now}
	_, err = db.w.ExecContext(ctx, `INSERT INTO apps (`+appCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		a.ID, a.UserID, a.Name, a.Description, nanos(now), nanos(now))
	return a, fail("create app", err)
}

func (db *DB) GetApp(ctx context.Context, p idflow.Principal, id string) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	return getOne(ctx, db.r, "app", `SELECT `+appCols+` FROM apps WHERE user_id = ? AND id = ?`, scanApp, owner, id)
}

func (db *DB) ListApps(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.App], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.App]{Items: []idflow.App{}}, err
	}
	return list(ctx, db.r, listAppsSQL, []any{owner}, byCreated, false, page, scanApp, appKey)
}

func (db *DB) UpdateApp(ctx context.Context, p idflow.Principal, id string, patch idflow.AppPatch) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	return getOne(ctx, db.w, "app", `UPDATE apps SET name = COALESCE(?, name), description = COALESCE(?, description),
		updated_at = ? WHERE user_id = ? AND id = ? RETURNING `+appCols,
		scanApp, optional(patch.Name), optional(patch.Description), nanos(db.now()), owner, id)
}

// DeleteApp deletes the app. Sessions and documents that reference it are
// kept, with the reference cleared: they belong to the user, not to the app,
// and losing a chat history because an app was removed would surprise.
func (db *DB) DeleteApp(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.tx(ctx, "delete app", func(tx *sql.Tx) error {
		for _, q := range []string{
			`UPDATE sessions SET app_id = NULL WHERE user_id = ? AND app_id = ?`,
			`UPDATE documents SET app_id = NULL WHERE user_id = ? AND app_id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, owner, id); err != nil {
				return err
			}
		}
		return deleteOwned(ctx, tx, "apps", "app", owner, id)
	})
}

const (
	agentCols     = `id, user_id, name, instructions, model, tools, created_at, updated_at`
	listAgentsSQL = `SELECT ` + agentCols + ` FROM agents WHERE user_id = ?`
)

func scanAgent(r rowScanner) (idflow.Agent, error) {
	var a idflow.Agent
	var tools string
	var created, updated int64
	if err := r.Scan(&a.ID, &a.UserID, &a.Name, &a.Instructions, &a.Model, &tools, &created, &updated); err != nil {
		return a, err
	}
	a.CreatedAt, a.UpdatedAt = fromNanos(created), fromNanos(updated)
	return a, json.Unmarshal([]byte(tools), &a.Tools)
}

func agentKey(a idflow.Agent) cursor { return cursor{Key: nanos(a.CreatedAt), ID: a.ID} }

// toolsJSON encodes tools as a JSON array, never null.
func toolsJSON(tools []string) string {
	if tools == nil {
		tools = []string{}
	}
	b, _ := json.Marshal(tools) // a []string always encodes
	return string(b)
}

func (db *DB) CreateAgent(ctx context.Context, p idflow.Principal, a idflow.Agent) (idflow.Agent, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Agent{}, err
	}
	now := db.now()
	tools := toolsJSON(a.Tools)
	a = idflow.Agent{ID: idflow.NewID(idflow.PrefixAgent), UserID: owner, Name: a.Name, Instructions: a.Instructions,
		Model: a.Model, Tools: append([]string{}, a.Tools...), CreatedAt: now, UpdatedAt: now}
	_, err = db.w.ExecContext(ctx, `INSERT INTO agents (`+agentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.UserID, a.Name, a.Instructions, a.Model, tools, nanos(now), nanos(now))
	return a, fail("create agent", err)
}

func (db *DB) GetAgent(ctx context.Context, p idflow.Principal, id string) (idflow.Agent, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Agent{}, err
	}
	return getOne(ctx, db.r, "agent", `SELECT `+agentCols+` FROM agents WHERE user_id = ? AND id = ?`, scanAgent, owner, id)
}

func (db *DB) ListAgents(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Agent], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Agent]{Items: []idflow.Agent{}}, err
	}
	return list(ctx, db.r, listAgentsSQL, []any{owner}, byCreated, false, page, scanAgent, agentKey)
}

func (db *DB) UpdateAgent(ctx context.Context, p idflow.Principal, id string, patch idflow.AgentPatch) (idflow.Agent, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Agent{}, err
	}
	var tools any
	if patch.Tools != nil {
		tools = toolsJSON(*patch.Tools)
	}
	return getOne(ctx, db.w, "agent", `UPDATE agents SET name = COALESCE(?, name), instructions = COALESCE(?, instructions),
		model = COALESCE(?, model), tools = COALESCE(?, tools), updated_at = ?
		WHERE user_id = ? AND id = ? RETURNING `+agentCols,
		scanAgent, optional(patch.Name), optional(patch.Instructions), optional(patch.Model), tools, nanos(db.now()), owner, id)
}

// DeleteAgent deletes the agent; sessions that reference it are kept with the
// reference cleared, as for apps.
func (db *DB) DeleteAgent(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.tx(ctx, "delete agent", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET agent_id = NULL WHERE user_id = ? AND agent_id = ?`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "agents", "agent", owner, id)
	})
}
