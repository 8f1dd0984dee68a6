package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

// The ConnectionStore on PostgreSQL: users' sealed downstream credentials
// and pending connect flows, in two user tables behind the owner predicate
// and the owner_rows policy (migrations/0002_connections.sql), so that
// replicas share the vault through the database (DESIGN §6). It mirrors the
// SQLite store.

// maxPendingStates bounds the connect flows one user may have in progress;
// older ones are dropped when a new one starts.
const maxPendingStates = 20

const connectionCols = `provider, user_id, status, scopes, expires_at, created_at, updated_at`

func scanConnection(r rowScanner) (idflow.Connection, error) {
	var c idflow.Connection
	var scopes string
	if err := r.Scan(&c.Provider, &c.UserID, &c.Status, &scopes, &c.ExpiresAt, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return c, err
	}
	c.ExpiresAt = utc(c.ExpiresAt)
	return c, decodeScopes(scopes, &c.Scopes)
}

// decodeScopes reads a JSON array of scopes, never nil.
func decodeScopes(s string, out *[]string) error {
	if err := json.Unmarshal([]byte(s), out); err != nil {
		return err
	}
	if *out == nil {
		*out = []string{}
	}
	return nil
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
	out := []idflow.Connection{}
	err = db.asUser(ctx, "list connections", owner, readOnly, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+connectionCols+` FROM connections WHERE user_id = $1 ORDER BY provider`, owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c, err := scanConnection(rows)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return []idflow.Connection{}, err
	}
	return out, nil
}

// GetCredential answers the caller's sealed credential for provider.
func (db *DB) GetCredential(ctx context.Context, p idflow.Principal, provider string) (idflow.SealedCredential, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.SealedCredential{}, err
	}
	var c idflow.SealedCredential
	err = db.asUser(ctx, "get credential", owner, readOnly, func(tx pgx.Tx) error {
		var err error
		c, err = getOne(ctx, tx, "connection", `SELECT provider, key_id, ciphertext, status, scopes, expires_at
			FROM connections WHERE user_id = $1 AND provider = $2`,
			func(r rowScanner) (idflow.SealedCredential, error) {
				var c idflow.SealedCredential
				var scopes string
				if err := r.Scan(&c.Provider, &c.KeyID, &c.Ciphertext, &c.Status, &scopes, &c.ExpiresAt); err != nil {
					return c, err
				}
				c.ExpiresAt = utc(c.ExpiresAt)
				return c, decodeScopes(scopes, &c.Scopes)
			}, owner, provider)
		return err
	})
	if err != nil {
		return idflow.SealedCredential{}, err
	}
	return c, nil
}

// PutCredential inserts or replaces the caller's credential for c.Provider;
// a replacement keeps created_at.
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
	var expires *time.Time
	if c.ExpiresAt != nil {
		t := c.ExpiresAt.UTC().Truncate(time.Microsecond)
		expires = &t
	}
	now := db.now()
	var out idflow.Connection
	err = db.asUser(ctx, "put credential", owner, readWrite, func(tx pgx.Tx) error {
		var err error
		out, err = getOne(ctx, tx, "connection", `INSERT INTO connections
			(user_id, provider, key_id, ciphertext, status, scopes, expires_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
			ON CONFLICT (user_id, provider) DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext,
				status = excluded.status, scopes = excluded.scopes, expires_at = excluded.expires_at,
				updated_at = excluded.updated_at
			RETURNING `+connectionCols,
			scanConnection, owner, c.Provider, c.KeyID, c.Ciphertext, c.Status, toolsJSON(c.Scopes), expires, now)
		return err
	})
	if err != nil {
		return idflow.Connection{}, err
	}
	return out, nil
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
	return db.asUser(ctx, "set connection status", owner, readWrite, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE connections SET status = $1, updated_at = $2 WHERE user_id = $3 AND provider = $4`,
			status, db.now(), owner, provider)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return idflow.NotFound("connection")
		}
		return nil
	})
}

// DeleteCredential forgets the caller's credential for provider.
func (db *DB) DeleteCredential(ctx context.Context, p idflow.Principal, provider string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.asUser(ctx, "delete credential", owner, readWrite, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM connections WHERE user_id = $1 AND provider = $2`, owner, provider)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return idflow.NotFound("connection")
		}
		return nil
	})
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
	return db.asUser(ctx, "save connect state", owner, readWrite, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM connect_states WHERE user_id = $1 AND expires_at <= $2`, owner, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO connect_states
			(user_id, state, provider, code_verifier, redirect_uri, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			owner, s.State, s.Provider, s.CodeVerifier, s.RedirectURI, s.ExpiresAt.UTC().Truncate(time.Microsecond), now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM connect_states WHERE user_id = $1 AND state NOT IN (
			SELECT state FROM connect_states WHERE user_id = $1 ORDER BY created_at DESC, state DESC LIMIT $2)`,
			owner, maxPendingStates)
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
	var s idflow.ConnectState
	err = db.asUser(ctx, "take connect state", owner, readWrite, func(tx pgx.Tx) error {
		var err error
		s, err = getOne(ctx, tx, "connect state", `DELETE FROM connect_states WHERE user_id = $1 AND state = $2
			RETURNING state, provider, code_verifier, redirect_uri, expires_at`,
			func(r rowScanner) (idflow.ConnectState, error) {
				var s idflow.ConnectState
				err := r.Scan(&s.State, &s.Provider, &s.CodeVerifier, &s.RedirectURI, &s.ExpiresAt)
				return s, err
			}, owner, state)
		return err
	})
	if err != nil {
		return idflow.ConnectState{}, err
	}
	if !time.Now().Before(s.ExpiresAt) {
		return idflow.ConnectState{}, idflow.NotFound("connect state")
	}
	return s, nil
}
