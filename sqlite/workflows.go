package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

const (
	workflowCols     = `id, user_id, name, definition, status, version, published_at, created_at, updated_at`
	listWorkflowsSQL = `SELECT ` + workflowCols + ` FROM workflows WHERE user_id = ?`
)

func scanWorkflow(r rowScanner) (idflow.Workflow, error) {
	var w idflow.Workflow
	var def string
	var published sql.NullInt64
	var created, updated int64
	if err := r.Scan(&w.ID, &w.UserID, &w.Name, &def, &w.Status, &w.Version, &published, &created, &updated); err != nil {
		return w, err
	}
	if published.Valid {
		t := fromNanos(published.Int64)
		w.PublishedAt = &t
	}
	w.CreatedAt, w.UpdatedAt = fromNanos(created), fromNanos(updated)
	var err error
	w.Definition, err = sqlstore.DecodeDefinition(def)
	return w, err
}

func workflowKey(w idflow.Workflow) cursor { return cursor{Key: nanos(w.CreatedAt), ID: w.ID} }

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
	_, err = db.w.ExecContext(ctx, `INSERT INTO workflows (`+workflowCols+`) VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?)`,
		w.ID, owner, w.Name, def, w.Status, nanos(now), nanos(now))
	if err != nil {
		return idflow.Workflow{}, fail("create workflow", err)
	}
	return w, nil
}

func (db *DB) GetWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	return getOne(ctx, db.r, "workflow", `SELECT `+workflowCols+` FROM workflows WHERE user_id = ? AND id = ?`, scanWorkflow, owner, id)
}

func (db *DB) ListWorkflows(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Workflow], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.Workflow]{Items: []idflow.Workflow{}}, err
	}
	return list(ctx, db.r, listWorkflowsSQL, []any{owner}, byCreated, false, page, scanWorkflow, workflowKey)
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
	return getOne(ctx, db.w, "workflow", `UPDATE workflows SET name = ?, definition = ?, updated_at = ?
		WHERE user_id = ? AND id = ? RETURNING `+workflowCols, scanWorkflow, name, text, nanos(db.now()), owner, id)
}

// DeleteWorkflow deletes the workflow and its published versions.
func (db *DB) DeleteWorkflow(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.tx(ctx, "delete workflow", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM workflow_versions WHERE user_id = ? AND workflow_id = ?`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "workflows", "workflow", owner, id)
	})
}

// PublishWorkflow freezes the current definition as version previous+1.
func (db *DB) PublishWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	var w idflow.Workflow
	err = db.tx(ctx, "publish workflow", func(tx *sql.Tx) error {
		var def string
		var version int
		err := tx.QueryRowContext(ctx, `SELECT definition, version FROM workflows WHERE user_id = ? AND id = ?`, owner, id).
			Scan(&def, &version)
		if errors.Is(err, sql.ErrNoRows) {
			return idflow.NotFound("workflow")
		} else if err != nil {
			return err
		}
		now := nanos(db.now())
		if _, err := tx.ExecContext(ctx, `INSERT INTO workflow_versions (user_id, workflow_id, version, definition, created_at)
			VALUES (?, ?, ?, ?, ?)`, owner, id, version+1, def, now); err != nil {
			return err
		}
		w, err = getOne(ctx, tx, "workflow", `UPDATE workflows SET status = ?, version = ?, published_at = ?, updated_at = ?
			WHERE user_id = ? AND id = ? RETURNING `+workflowCols, scanWorkflow,
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
	switch {
	case version < 0:
		return idflow.Definition{}, idflow.Errorf(idflow.EINVALID, "version must not be negative")
	case version == 0:
		return getOne(ctx, db.r, "workflow", `SELECT definition FROM workflows WHERE user_id = ? AND id = ?`, scan, owner, id)
	default:
		return getOne(ctx, db.r, "workflow", `SELECT definition FROM workflow_versions
			WHERE user_id = ? AND workflow_id = ? AND version = ?`, scan, owner, id, version)
	}
}
