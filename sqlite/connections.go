package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/idflow/idflow"
)

// maxPendingStates bounds the connect flows one user may have in progress;
// older ones are dropped when a new one starts.
const maxPendingStates = 20

const connectionCols = `provider, user_id, status, scopes, expires_at, created_at, updated_at`

func scanConnection(r rowScanner) (idflow.Connection, error) {
	var c idflow.Connection
	var scopes string
	var expires sql.NullInt64
	var created, updated int64
	if err := r.Scan(&c.Provider, &c.UserID, &c.Status, &scopes, &expires, &created, &updated); err != nil {
		return c, err
	}
	c.CreatedAt, c.UpdatedAt = fromNanos(created), fromNanos(updated)
	if expires.Valid {
		t := fromNanos(expires.Int64)
		c.ExpiresAt = &t
	}
	return c, json.Unmarshal([]byte(scopes), &c.Scopes)
}

func validStatus(s string) bool {
	return s == idflow.ConnectionActive || s == idflow.ConnectionNeedsConsent
}

// ListConnections answers the caller's connections, by provider name.
func (db *DB) ListConnections(ctx context.Context, p idflow.Principal) ([]idflow.Connection, error) {
	owner, err := p.Owner()
	if err != nil {
		return []idflow.Connection{}, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+connectionCols+` FROM connections WHERE user_id = ? ORDER BY provider`, owner)
	if err != nil {
		return []idflow.Connection{}, fail("list connections", err)
	}
	defer rows.Close()
	out := []idflow.Connection{}
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return []idflow.Connection{}, fail("list connections", err)
		}
		out = append(out, c)
	}
	return out, fail("list connections", rows.Err())
}

// GetCredential answers the caller's sealed credential for provider.
func (db *DB) GetCredential(ctx context.Context, p idflow.Principal, provider string) (idflow.SealedCredential, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.SealedCredential{}, err
	}
	return getOne(ctx, db.r, "connection", `SELECT provider, key_id, ciphertext, status, scopes, expires_at
		FROM connections WHERE user_id = ? AND provider = ?`,
		func(r rowScanner) (idflow.SealedCredential, error) {
			var c idflow.SealedCredential
			var scopes string
			var expires sql.NullInt64
			if err := r.Scan(&c.Provider, &c.KeyID, &c.Ciphertext, &c.Status, &scopes, &expires); err != nil {
				return c, err
			}
			if expires.Valid {
				t := fromNanos(expires.Int64)
				c.ExpiresAt = &t
			}
			return c, json.Unmarshal([]byte(scopes), &c.Scopes)
		}, owner, provider)
}

// PutCredential inserts or replaces the caller's credential for c.Provider.
func (db *DB) PutCredential(ctx context.Context, p idflow.Principal, c idflow.SealedCredential) (idflow.Connection, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Connection{}, err
	}
	if c.Provider == "" || c.KeyID == "" || len(c.Ciphertext) == 0 {
		return idflow.Connection{}, idflow.Errorf(idflow.EINVALID, "a credential needs a provider, a key id and a ciphertext")
	}
	if c.Status == "" {
		c.Status = idflow.ConnectionActive
	}
	if !validStatus(c.Status) {
		return idflow.Connection{}, idflow.Errorf(idflow.EINVALID, "unknown connection status %q", c.Status)
	}
	var expires any
	if c.ExpiresAt != nil {
		expires = nanos(*c.ExpiresAt)
	}
	now := nanos(db.now())
	return getOne(ctx, db.w, "connection", `INSERT INTO connections
		(user_id, provider, key_id, ciphertext, status, scopes, expires_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id, provider) DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext,
			status = excluded.status, scopes = excluded.scopes, expires_at = excluded.expires_at,
			updated_at = excluded.updated_at
		RETURNING `+connectionCols,
		scanConnection, owner, c.Provider, c.KeyID, c.Ciphertext, c.Status, toolsJSON(c.Scopes), expires, now, now)
}

// SetConnectionStatus changes the status of the caller's connection.
func (db *DB) SetConnectionStatus(ctx context.Context, p idflow.Principal, provider, status string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if !validStatus(status) {
		return idflow.Errorf(idflow.EINVALID, "unknown connection status %q", status)
	}
	res, err := db.w.ExecContext(ctx, `UPDATE connections SET status = ?, updated_at = ? WHERE user_id = ? AND provider = ?`,
		status, nanos(db.now()), owner, provider)
	if err != nil {
		return fail("set connection status", err)
	}
	return fail("set connection status", affectedOne(res, "connection"))
}

// DeleteCredential forgets the caller's credential for provider.
func (db *DB) DeleteCredential(ctx context.Context, p idflow.Principal, provider string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	res, err := db.w.ExecContext(ctx, `DELETE FROM connections WHERE user_id = ? AND provider = ?`, owner, provider)
	if err != nil {
		return fail("delete connection", err)
	}
	return fail("delete connection", affectedOne(res, "connection"))
}

func affectedOne(res sql.Result, kind string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return idflow.NotFound(kind)
	}
	return nil
}

// SaveConnectState records a pending connect flow of the caller. Expired
// flows of the caller are dropped, and so are the oldest beyond
// maxPendingStates.
func (db *DB) SaveConnectState(ctx context.Context, p idflow.Principal, s idflow.ConnectState) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if s.State == "" || s.Provider == "" || s.ExpiresAt.IsZero() {
		return idflow.Errorf(idflow.EINVALID, "a connect state needs a state, a provider and an expiry")
	}
	now := db.now()
	return db.tx(ctx, "save connect state", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM connect_states WHERE user_id = ? AND expires_at <= ?`, owner, nanos(now)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO connect_states
			(user_id, state, provider, code_verifier, redirect_uri, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			owner, s.State, s.Provider, s.CodeVerifier, s.RedirectURI, nanos(s.ExpiresAt), nanos(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM connect_states WHERE user_id = ? AND state NOT IN (
			SELECT state FROM connect_states WHERE user_id = ? ORDER BY created_at DESC LIMIT ?)`, owner, owner, maxPendingStates)
		return err
	})
}

// TakeConnectState deletes and returns the caller's pending flow named
// state. Another user's state, an expired one and a used one are not found.
func (db *DB) TakeConnectState(ctx context.Context, p idflow.Principal, state string) (idflow.ConnectState, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.ConnectState{}, err
	}
	s, err := getOne(ctx, db.w, "connect state", `DELETE FROM connect_states WHERE user_id = ? AND state = ?
		RETURNING state, provider, code_verifier, redirect_uri, expires_at`,
		func(r rowScanner) (idflow.ConnectState, error) {
			var s idflow.ConnectState
			var expires int64
			err := r.Scan(&s.State, &s.Provider, &s.CodeVerifier, &s.RedirectURI, &expires)
			s.ExpiresAt = fromNanos(expires)
			return s, err
		}, owner, state)
	if err != nil {
		return idflow.ConnectState{}, err
	}
	if !time.Now().Before(s.ExpiresAt) {
		return idflow.ConnectState{}, idflow.NotFound("connect state")
	}
	return s, nil
}
