package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

const browserSessionCols = `id_hash, user_id, csrf, key_id, sealed, created_at, updated_at, expires_at`

// bySecret runs fn in a transaction that may see the one session whose id
// hashes to idHash (the by_secret policy), and, when owner is set, the
// owner's rows.
func (db *DB) bySecret(ctx context.Context, op, idHash, owner string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return fail(op, pgx.BeginTxFunc(ctx, db.pool, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('idflow.session_hash', $1, true), set_config('idflow.user_id', $2, true)`, idHash, owner); err != nil {
			return err
		}
		return fn(tx)
	}))
}

func (db *DB) CreateBrowserSession(ctx context.Context, s idflow.BrowserSession) error {
	if s.UserID == "" {
		return idflow.Errorf(idflow.EFORBIDDEN, "a user identity is required")
	}
	return db.bySecret(ctx, "create browser session", s.IDHash, s.UserID, readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO browser_sessions (`+browserSessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			s.IDHash, s.UserID, s.CSRF, s.KeyID, s.Sealed, s.CreatedAt, s.UpdatedAt, s.ExpiresAt)
		if err != nil {
			return err
		}
		// Sweep this user's expired sessions as new ones arrive.
		_, err = tx.Exec(ctx, `DELETE FROM browser_sessions WHERE user_id = $1 AND expires_at < now()`, s.UserID)
		return err
	})
}

func (db *DB) GetBrowserSession(ctx context.Context, idHash string) (idflow.BrowserSession, error) {
	var s idflow.BrowserSession
	err := db.bySecret(ctx, "get browser session", idHash, "", readOnly, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT `+browserSessionCols+` FROM browser_sessions WHERE id_hash = $1 AND expires_at > now()`, idHash).
			Scan(&s.IDHash, &s.UserID, &s.CSRF, &s.KeyID, &s.Sealed, &s.CreatedAt, &s.UpdatedAt, &s.ExpiresAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return idflow.NotFound("session")
		}
		return err
	})
	return s, err
}

func (db *DB) UpdateBrowserSession(ctx context.Context, s idflow.BrowserSession) error {
	return db.bySecret(ctx, "update browser session", s.IDHash, s.UserID, readWrite, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE browser_sessions SET key_id = $1, sealed = $2, updated_at = $3
			WHERE id_hash = $4 AND user_id = $5`, s.KeyID, s.Sealed, s.UpdatedAt, s.IDHash, s.UserID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return idflow.NotFound("session")
		}
		return nil
	})
}

func (db *DB) DeleteBrowserSession(ctx context.Context, idHash string) error {
	return db.bySecret(ctx, "delete browser session", idHash, "", readWrite, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM browser_sessions WHERE id_hash = $1`, idHash)
		return err
	})
}
