package sqlstore

import (
	"context"

	"github.com/idflow/idflow"
)

// Browser sessions are found by the hash of their secret id before anyone
// is authenticated (Backend.BySecret); updates and deletes also need the
// owner.

const browserSessionCols = `id_hash, user_id, csrf, key_id, sealed, created_at, updated_at, expires_at`

// CreateBrowserSession records s; the owner's expired sessions are swept
// as new ones arrive (Dialect.SweepBrowserSessions).
func (s *Store) CreateBrowserSession(ctx context.Context, bs idflow.BrowserSession) error {
	if err := bs.Validate(); err != nil {
		return err
	}
	return s.fail("create browser session", s.b.BySecret(ctx, bs.IDHash, bs.UserID, true, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO browser_sessions (`+browserSessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			bs.IDHash, bs.UserID, bs.CSRF, bs.KeyID, bs.Sealed, bs.CreatedAt, bs.UpdatedAt, bs.ExpiresAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.b.SQL.SweepBrowserSessions, bs.UserID, s.clock.now())
		return err
	}))
}

// GetBrowserSession looks a session up by the hash of its secret id; an
// expired one is not found.
func (s *Store) GetBrowserSession(ctx context.Context, idHash string) (idflow.BrowserSession, error) {
	var bs idflow.BrowserSession
	err := s.b.BySecret(ctx, idHash, "", false, func(tx Tx) error {
		var err error
		bs, err = getOne(ctx, tx, "session", `SELECT `+browserSessionCols+` FROM browser_sessions WHERE id_hash = $1 AND expires_at > $2`,
			func(r Row) (idflow.BrowserSession, error) {
				var bs idflow.BrowserSession
				err := r.Scan(&bs.IDHash, &bs.UserID, &bs.CSRF, &bs.KeyID, &bs.Sealed, &bs.CreatedAt, &bs.UpdatedAt, &bs.ExpiresAt)
				return bs, err
			}, idHash, s.clock.now())
		return err
	})
	return bs, s.fail("get browser session", err)
}

// UpdateBrowserSession replaces the sealed tokens of a session; the owner
// must match.
func (s *Store) UpdateBrowserSession(ctx context.Context, bs idflow.BrowserSession) error {
	return s.fail("update browser session", s.b.BySecret(ctx, bs.IDHash, bs.UserID, true, func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE browser_sessions SET key_id = $1, sealed = $2, updated_at = $3
			WHERE id_hash = $4 AND user_id = $5`, bs.KeyID, bs.Sealed, bs.UpdatedAt, bs.IDHash, bs.UserID)
		return affectedOne("session", n, err)
	}))
}

func (s *Store) DeleteBrowserSession(ctx context.Context, idHash string) error {
	return s.fail("delete browser session", s.b.BySecret(ctx, idHash, "", true, func(tx Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM browser_sessions WHERE id_hash = $1`, idHash)
		return err
	}))
}

func (s *Store) EndBrowserSessions(ctx context.Context, p idflow.Principal) (int, error) {
	owner, err := p.Owner()
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.write(ctx, "end browser sessions", owner, func(tx Tx) error {
		n, err = tx.Exec(ctx, `DELETE FROM browser_sessions WHERE user_id = $1`, owner)
		return err
	})
	return int(n), err
}
