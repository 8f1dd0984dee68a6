package sqlite

import (
	"context"
	"database/sql"

	"github.com/idflow/idflow"
)

const browserSessionCols = `id_hash, user_id, csrf, key_id, sealed, created_at, updated_at, expires_at`

func (db *DB) CreateBrowserSession(ctx context.Context, s idflow.BrowserSession) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO browser_sessions (`+browserSessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		s.IDHash, s.UserID, s.CSRF, s.KeyID, s.Sealed, nanos(s.CreatedAt), nanos(s.UpdatedAt), nanos(s.ExpiresAt))
	if err != nil {
		return fail("create browser session", err)
	}
	// Expired sessions are swept as new ones arrive.
	_, err = db.w.ExecContext(ctx, `DELETE FROM browser_sessions WHERE expires_at < ?`, nanos(db.now()))
	return fail("sweep browser sessions", err)
}

// GetBrowserSession looks a session up by the hash of its secret id; an
// expired one is not found.
func (db *DB) GetBrowserSession(ctx context.Context, idHash string) (idflow.BrowserSession, error) {
	return getOne(ctx, db.r, "session", `SELECT `+browserSessionCols+` FROM browser_sessions WHERE id_hash = ? AND expires_at > ?`,
		func(r rowScanner) (idflow.BrowserSession, error) {
			var s idflow.BrowserSession
			var created, updated, expires int64
			err := r.Scan(&s.IDHash, &s.UserID, &s.CSRF, &s.KeyID, &s.Sealed, &created, &updated, &expires)
			s.CreatedAt, s.UpdatedAt, s.ExpiresAt = fromNanos(created), fromNanos(updated), fromNanos(expires)
			return s, err
		}, idHash, nanos(db.now()))
}

// UpdateBrowserSession replaces the sealed tokens of a session; the owner
// must match.
func (db *DB) UpdateBrowserSession(ctx context.Context, s idflow.BrowserSession) error {
	return db.tx(ctx, "update browser session", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE browser_sessions SET key_id = ?, sealed = ?, updated_at = ?
			WHERE id_hash = ? AND user_id = ?`, s.KeyID, s.Sealed, nanos(s.UpdatedAt), s.IDHash, s.UserID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return idflow.NotFound("session")
		}
		return nil
	})
}

func (db *DB) DeleteBrowserSession(ctx context.Context, idHash string) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM browser_sessions WHERE id_hash = ?`, idHash)
	return fail("delete browser session", err)
}
