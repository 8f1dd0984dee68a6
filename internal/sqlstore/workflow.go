package sqlstore

import (
	"context"

	"github.com/idflow/idflow"
)

const (
	workflowCols     = `id, user_id, name, definition, status, version, published_at, created_at, updated_at`
	ListWorkflowsSQL = `SELECT ` + workflowCols + ` FROM workflows WHERE user_id = $1`
)

func scanWorkflow(r Row) (idflow.Workflow, error) {
	var w idflow.Workflow
	var def string
	if err := r.Scan(&w.ID, &w.UserID, &w.Name, &def, &w.Status, &w.Version, &w.PublishedAt, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return w, err
	}
	var err error
	w.Definition, err = DecodeDefinition(def)
	return w, err
}

func scanDefinition(r Row) (idflow.Definition, error) {
	s, err := scanString(r)
	if err != nil {
		return idflow.Definition{}, err
	}
	return DecodeDefinition(s)
}

func workflowKey(w idflow.Workflow) Cursor { return createdKey(w.CreatedAt, w.ID) }

func (s *Store) CreateWorkflow(ctx context.Context, p idflow.Principal, w idflow.Workflow) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	def, decoded, err := EncodeDefinition(w.Definition)
	if err != nil {
		return idflow.Workflow{}, s.fail("create workflow", err)
	}
	now := s.clock.now()
	w = idflow.Workflow{ID: idflow.NewID(idflow.PrefixWorkflow), UserID: owner, Name: w.Name, Definition: decoded,
		Status: idflow.WorkflowDraft, CreatedAt: now, UpdatedAt: now}
	err = s.write(ctx, "create workflow", owner, func(tx Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO workflows (`+workflowCols+`) VALUES ($1, $2, $3, $4, $5, 0, NULL, $6, $7)`,
			w.ID, owner, w.Name, def, w.Status, now, now)
		return err
	})
	if err != nil {
		return idflow.Workflow{}, err
	}
	return w, nil
}

func (s *Store) GetWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	return getOwned(ctx, s, p, "workflow", `SELECT `+workflowCols+` FROM workflows WHERE user_id = $1 AND id = $2`, scanWorkflow, id)
}

func (s *Store) ListWorkflows(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Workflow], error) {
	return listOwned(ctx, s, p, "list workflows", ListWorkflowsSQL, nil, ByCreated, page, scanWorkflow, workflowKey)
}

// ReplaceWorkflow replaces the draft's name and definition; published
// versions stay frozen, and Status and Version are unchanged.
func (s *Store) ReplaceWorkflow(ctx context.Context, p idflow.Principal, id string, name string, def idflow.Definition) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	text, _, err := EncodeDefinition(def)
	if err != nil {
		return idflow.Workflow{}, s.fail("replace workflow", err)
	}
	var w idflow.Workflow
	err = s.write(ctx, "replace workflow", owner, func(tx Tx) error {
		w, err = getOne(ctx, tx, "workflow", `UPDATE workflows SET name = $1, definition = $2, updated_at = $3
			WHERE user_id = $4 AND id = $5 RETURNING `+workflowCols, scanWorkflow, name, text, s.clock.now(), owner, id)
		return err
	})
	return w, err
}

// DeleteWorkflow deletes the workflow and its published versions.
func (s *Store) DeleteWorkflow(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete workflow", owner, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM workflow_versions WHERE user_id = $1 AND workflow_id = $2`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "workflows", "workflow", owner, id)
	})
}

// PublishWorkflow freezes the current definition as version previous+1.
// The row lock (LockRow) makes concurrent publishes take turns.
func (s *Store) PublishWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Workflow{}, err
	}
	var w idflow.Workflow
	err = s.write(ctx, "publish workflow", owner, func(tx Tx) error {
		type current struct {
			def     string
			version int
		}
		cur, err := getOne(ctx, tx, "workflow", `SELECT definition, version FROM workflows WHERE user_id = $1 AND id = $2`+s.b.SQL.LockRow,
			func(r Row) (current, error) {
				var c current
				return c, r.Scan(&c.def, &c.version)
			}, owner, id)
		if err != nil {
			return err
		}
		now := s.clock.now()
		if _, err := tx.Exec(ctx, `INSERT INTO workflow_versions (user_id, workflow_id, version, definition, created_at)
			VALUES ($1, $2, $3, $4, $5)`, owner, id, cur.version+1, cur.def, now); err != nil {
			return err
		}
		w, err = getOne(ctx, tx, "workflow", `UPDATE workflows SET status = $1, version = $2, published_at = $3, updated_at = $3
			WHERE user_id = $4 AND id = $5 RETURNING `+workflowCols, scanWorkflow,
			idflow.WorkflowPublished, cur.version+1, now, owner, id)
		return err
	})
	if err != nil {
		return idflow.Workflow{}, err
	}
	return w, nil
}

// GetWorkflowVersion answers a published version's frozen definition, or
// the current draft for version 0.
func (s *Store) GetWorkflowVersion(ctx context.Context, p idflow.Principal, id string, version int) (idflow.Definition, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Definition{}, err
	}
	if version < 0 {
		return idflow.Definition{}, idflow.Errorf(idflow.EINVALID, "version must not be negative")
	}
	var def idflow.Definition
	err = s.read(ctx, "get workflow version", owner, func(tx Tx) error {
		if version == 0 {
			def, err = getOne(ctx, tx, "workflow", `SELECT definition FROM workflows WHERE user_id = $1 AND id = $2`, scanDefinition, owner, id)
		} else {
			def, err = getOne(ctx, tx, "workflow", `SELECT definition FROM workflow_versions
				WHERE user_id = $1 AND workflow_id = $2 AND version = $3`, scanDefinition, owner, id, version)
		}
		return err
	})
	return def, err
}
