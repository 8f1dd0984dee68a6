package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

const (
	workflowCols     = `id, user_id, name, definition, status, version, published_at, created_at, updated_at`
	listWorkflowsSQL = `SELECT ` + workflowCols + ` FROM workflows WHERE user_id = $1`
)

func scanWorkflow(r rowScanner) (idflow.Workflow, error) {
	var w idflow.Workflow
	var def string
	if err := r.Scan(&w.ID, &w.UserID, &w.Name, &def, &w.Status, &w.Version, &w.PublishedAt, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return w, err
	}
	w.PublishedAt = utc(w.PublishedAt)
	var err error
	w.Definition, err = sqlstore.DecodeDefinition(def)
	return w, err
}

func workflowKey(w idflow.Workflow) cursor { return cursor{Key: timeKey(w.CreatedAt), ID: w.ID} }

func (db *DB) CreateWorkflow(ctx context.Context, p idflow.Principal, w idflow.Workflow) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	def, decoded, err := sqlstore.EncodeDefinition(w.Definition)
	if err != nil {
		return idflow.Workflow{}, fail("create workflow", err)
	}
	now := db.now()
	w = idflow.Workflow{ID: idflow.NewID(idflow.PrefixWorkflow), UserID: owner, Name: w.Name, Definition: decoded,
		Status: idflow.WorkflowDraft, CreatedAt: now, UpdatedAt: now}
	err = db.asUser(ctx, "create workflow", owner, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO workflows (`+workflowCols+`) VALUES ($1, $2, $3, $4, $5, 0, NULL, $6, $7)`,
			w.ID, owner, w.Name, def, w.Status, now, now)
		return err
	})
	if err != nil {
		return idflow.Workflow{}, err
	}
	return w, nil
}

func (db *DB) GetWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	var w idflow.Workflow
	err = db.asUser(ctx, "get workflow", owner, readOnly, func(tx pgx.Tx) error {
		var err error
		w, err = getOne(ctx, tx, "workflow", `SELECT `+workflowCols+` FROM workflows WHERE user_id = $1 AND id = $2`, scanWorkflow, owner, id)
		return err
	})
	return w, err
}

func (db *DB) ListWorkflows(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Workflow], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Workflow]{Items: []idflow.Workflow{}}, err
	}
	return listAs(ctx, db, "list workflows", owner, listWorkflowsSQL, []any{owner}, byCreated, false, page, scanWorkflow, workflowKey)
}

// ReplaceWorkflow replaces the draft's name and definition; published
// versions stay frozen, and Status and Version are unchanged.
func (db *DB) ReplaceWorkflow(ctx context.Context, p idflow.Principal, id string, name string, def idflow.Definition) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	text, _, err := sqlstore.EncodeDefinition(def)
	if err != nil {
		return idflow.Workflow{}, fail("replace workflow", err)
	}
	var w idflow.Workflow
	err = db.asUser(ctx, "replace workflow", owner, readWrite, func(tx pgx.Tx) error {
		var err error
		w, err = getOne(ctx, tx, "workflow", `UPDATE workflows SET name = $1, definition = $2, updated_at = $3
			WHERE user_id = $4 AND id = $5 RETURNING `+workflowCols, scanWorkflow, name, text, db.now(), owner, id)
		return err
	})
	return w, err
}

// DeleteWorkflow deletes the workflow and its published versions.
func (db *DB) DeleteWorkflow(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.asUser(ctx, "delete workflow", owner, readWrite, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM workflow_versions WHERE user_id = $1 AND workflow_id = $2`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "workflows", "workflow", owner, id)
	})
}

// PublishWorkflow freezes the current definition as version previous+1. The
// row lock (FOR NO KEY UPDATE) makes concurrent publishes take turns.
func (db *DB) PublishWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	var w idflow.Workflow
	err = db.asUser(ctx, "publish workflow", owner, readWrite, func(tx pgx.Tx) error {
		var def string
		var version int
		err := tx.QueryRow(ctx, `SELECT definition, version FROM workflows WHERE user_id = $1 AND id = $2 FOR NO KEY UPDATE`,
			owner, id).Scan(&def, &version)
		if errors.Is(err, pgx.ErrNoRows) {
			return idflow.NotFound("workflow")
		} else if err != nil {
			return err
		}
		now := db.now()
		if _, err := tx.Exec(ctx, `INSERT INTO workflow_versions (user_id, workflow_id, version, definition, created_at)
			VALUES ($1, $2, $3, $4, $5)`, owner, id, version+1, def, now); err != nil {
			return err
		}
		w, err = getOne(ctx, tx, "workflow", `UPDATE workflows SET status = $1, version = $2, published_at = $3, updated_at = $4
			WHERE user_id = $5 AND id = $6 RETURNING `+workflowCols, scanWorkflow,
			idflow.WorkflowPublished, version+1, now, now, owner, id)
		return err
	})
	if err != nil {
		return idflow.Workflow{}, err
	}
	return w, nil
}

// GetWorkflowVersion answers a published version's frozen definition, or the
// current draft for version 0.
func (db *DB) GetWorkflowVersion(ctx context.Context, p idflow.Principal, id string, version int) (idflow.Definition, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Definition{}, err
	}
	scan := func(r rowScanner) (idflow.Definition, error) {
		var s string
		if err := r.Scan(&s); err != nil {
			return idflow.Definition{}, err
		}
		return sqlstore.DecodeDefinition(s)
	}
	if version < 0 {
		return idflow.Definition{}, idflow.Errorf(idflow.EINVALID, "version must not be negative")
	}
	var def idflow.Definition
	err = db.asUser(ctx, "get workflow version", owner, readOnly, func(tx pgx.Tx) error {
		var err error
		if version == 0 {
			def, err = getOne(ctx, tx, "workflow", `SELECT definition FROM workflows WHERE user_id = $1 AND id = $2`, scan, owner, id)
		} else {
			def, err = getOne(ctx, tx, "workflow", `SELECT definition FROM workflow_versions
				WHERE user_id = $1 AND workflow_id = $2 AND version = $3`, scan, owner, id, version)
		}
		return err
	})
	return def, err
}
