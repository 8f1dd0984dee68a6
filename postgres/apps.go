package postgres

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

const (
	appCols     = `id, user_id, name, description, created_at, updated_at`
	listAppsSQL = `SELECT ` + appCols + ` FROM apps WHERE user_id = $1`
)

func scanApp(r rowScanner) (idflow.App, error) {
	var a idflow.App
	err := r.Scan(&a.ID, &a.UserID, &a.Name, &a.Description, &a.CreatedAt, &a.UpdatedAt)
	return a, err
}

func appKey(a idflow.App) cursor { return cursor{Key: timeKey(a.CreatedAt), ID: a.ID} }

func (db *DB) CreateApp(ctx context.Context, p idflow.Principal, a idflow.App) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	now := db.now()
	a = idflow.App{ID: idflow.NewID(idflow.PrefixApp), UserID: owner, Name: a.Name, Description: a.Description,
		CreatedAt: now, UpdatedAt: now}
	err = db.asUser(ctx, "create app", owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO apps (`+appCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			a.ID, a.UserID, a.Name, a.Description, now, now)
		return err
	})
	if err != nil {
		return idflow.App{}, err
	}
	return a, nil
}

func (db *DB) GetApp(ctx context.Context, p idflow.Principal, id string) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	var a idflow.App
	err = db.asUser(ctx, "get app", owner, readOnly, func(tx pgx.Tx) error {
		a, err = getOne(ctx, tx, "app", `SELECT `+appCols+` FROM apps WHERE user_id = $1 AND id = $2`, scanApp, owner, id)
		return err
	})
	return a, err
}

func (db *DB) ListApps(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.App], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.App]{Items: []idflow.App{}}, err
	}
	return listAs(ctx, db, "list apps", owner, listAppsSQL, []any{owner}, byCreated, false, page, scanApp, appKey)
}

func (db *DB) UpdateApp(ctx context.Context, p idflow.Principal, id string, patch idflow.AppPatch) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	var a idflow.App
	err = db.asUser(ctx, "update app", owner, readWrite, func(tx pgx.Tx) error {
		a, err = getOne(ctx, tx, "app", `UPDATE apps SET name = COALESCE($1, name), description = COALESCE($2, description),
			updated_at = $3 WHERE user_id = $4 AND id = $5 RETURNING `+appCols,
			scanApp, optional(patch.Name), optional(patch.Description), db.now(), owner, id)
		return err
	})
	return a, err
}

// DeleteApp deletes the app. Sessions and documents that reference it are
// kept, with the reference cleared: they belong to the user, not to the app.
func (db *DB) DeleteApp(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.asUser(ctx, "delete app", owner, readWrite, func(tx pgx.Tx) error {
		for _, q := range []string{
			`UPDATE sessions SET app_id = NULL WHERE user_id = $1 AND app_id = $2`,
			`UPDATE documents SET app_id = NULL WHERE user_id = $1 AND app_id = $2`,
		} {
			if _, err := tx.Exec(ctx, q, owner, id); err != nil {
				return err
			}
		}
		return deleteOwned(ctx, tx, "apps", "app", owner, id)
	})
}

const (
	agentCols     = `id, user_id, name, instructions, model, tools, created_at, updated_at`
	listAgentsSQL = `SELECT ` + agentCols + ` FROM agents WHERE user_id = $1`
)

func scanAgent(r rowScanner) (idflow.Agent, error) {
	var a idflow.Agent
	var tools string
	if err := r.Scan(&a.ID, &a.UserID, &a.Name, &a.Instructions, &a.Model, &tools, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(tools), &a.Tools); err != nil {
		return a, err
	}
	if a.Tools == nil {
		a.Tools = []string{}
	}
	return a, nil
}

func agentKey(a idflow.Agent) cursor { return cursor{Key: timeKey(a.CreatedAt), ID: a.ID} }

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
	err = db.asUser(ctx, "create agent", owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO agents (`+agentCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			a.ID, a.UserID, a.Name, a.Instructions, a.Model, tools, now, now)
		return err
	})
	if err != nil {
		return idflow.Agent{}, err
	}
	return a, nil
}

func (db *DB) GetAgent(ctx context.Context, p idflow.Principal, id string) (idflow.Agent, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Agent{}, err
	}
	var a idflow.Agent
	err = db.asUser(ctx, "get agent", owner, readOnly, func(tx pgx.Tx) error {
		a, err = getOne(ctx, tx, "agent", `SELECT `+agentCols+` FROM agents WHERE user_id = $1 AND id = $2`, scanAgent, owner, id)
		return err
	})
	return a, err
}

func (db *DB) ListAgents(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Agent], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Agent]{Items: []idflow.Agent{}}, err
	}
	return listAs(ctx, db, "list agents", owner, listAgentsSQL, []any{owner}, byCreated, false, page, scanAgent, agentKey)
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
	var a idflow.Agent
	err = db.asUser(ctx, "update agent", owner, readWrite, func(tx pgx.Tx) error {
		a, err = getOne(ctx, tx, "agent", `UPDATE agents SET name = COALESCE($1, name), instructions = COALESCE($2, instructions),
			model = COALESCE($3, model), tools = COALESCE($4::json, tools), updated_at = $5
			WHERE user_id = $6 AND id = $7 RETURNING `+agentCols,
			scanAgent, optional(patch.Name), optional(patch.Instructions), optional(patch.Model), tools, db.now(), owner, id)
		return err
	})
	return a, err
}

// DeleteAgent deletes the agent; sessions that reference it are kept with the
// reference cleared, as for apps.
func (db *DB) DeleteAgent(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.asUser(ctx, "delete agent", owner, readWrite, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE sessions SET agent_id = NULL WHERE user_id = $1 AND agent_id = $2`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "agents", "agent", owner, id)
	})
}
