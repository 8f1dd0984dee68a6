package sqlstore

import (
	"context"

	"github.com/idflow/idflow"
)

const (
	appCols     = `id, user_id, name, description, created_at, updated_at`
	ListAppsSQL = `SELECT ` + appCols + ` FROM apps WHERE user_id = $1`
)

func scanApp(r Row) (idflow.App, error) {
	var a idflow.App
	err := r.Scan(&a.ID, &a.UserID, &a.Name, &a.Description, &a.CreatedAt, &a.UpdatedAt)
	return a, err
}

func appKey(a idflow.App) Cursor { return createdKey(a.CreatedAt, a.ID) }

func (s *Store) CreateApp(ctx context.Context, p idflow.Principal, a idflow.App) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	now := s.clock.now()
	a = idflow.App{ID: idflow.NewID(idflow.PrefixApp), UserID: owner, Name: a.Name, Description: a.Description,
		CreatedAt: now, UpdatedAt: now}
	err = s.write(ctx, "create app", owner, func(tx Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO apps (`+appCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			a.ID, a.UserID, a.Name, a.Description, now, now)
		return err
	})
	if err != nil {
		return idflow.App{}, err
	}
	return a, nil
}

func (s *Store) GetApp(ctx context.Context, p idflow.Principal, id string) (idflow.App, error) {
	return getOwned(ctx, s, p, "app", `SELECT `+appCols+` FROM apps WHERE user_id = $1 AND id = $2`, scanApp, id)
}

func (s *Store) ListApps(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.App], error) {
	return listOwned(ctx, s, p, "list apps", ListAppsSQL, nil, ByCreated, page, scanApp, appKey)
}

func (s *Store) UpdateApp(ctx context.Context, p idflow.Principal, id string, patch idflow.AppPatch) (idflow.App, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.App{}, err
	}
	var a idflow.App
	err = s.write(ctx, "update app", owner, func(tx Tx) error {
		a, err = getOne(ctx, tx, "app", `UPDATE apps SET name = COALESCE($1, name), description = COALESCE($2, description),
			updated_at = $3 WHERE user_id = $4 AND id = $5 RETURNING `+appCols,
			scanApp, optional(patch.Name), optional(patch.Description), s.clock.now(), owner, id)
		return err
	})
	return a, err
}

// DeleteApp deletes the app. Sessions and documents that reference it are
// kept, with the reference cleared: they belong to the user, not to the
// app, and losing a chat history because an app was removed would
// surprise.
func (s *Store) DeleteApp(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete app", owner, func(tx Tx) error {
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
