package sqlstore

import (
	"context"
	"time"

	"github.com/idflow/idflow"
)

// The ConnectionStore: users' sealed downstream credentials and pending
// connect flows, in two user tables behind the owner predicate (and, on
// PostgreSQL, the owner_rows policy), so that replicas share the vault
// through the database (replicas share no disk).

// MaxPendingStates bounds the connect flows one user may have in progress;
// older ones are dropped when a new one starts.
const MaxPendingStates = 20

const connectionCols = `provider, user_id, status, scopes, expires_at, created_at, updated_at`

func scanConnection(r Row) (idflow.Connection, error) {
	var c idflow.Connection
	var scopes string
	if err := r.Scan(&c.Provider, &c.UserID, &c.Status, &scopes, &c.ExpiresAt, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return c, err
	}
	var err error
	c.Scopes, err = decodeNames(scopes)
	return c, err
}

// ListConnections answers the caller's connections, by provider name.
func (s *Store) ListConnections(ctx context.Context, p idflow.Principal) ([]idflow.Connection, error) {
	owner, err := p.Owner()
	if err != nil {
		return []idflow.Connection{}, err
	}
	var out []idflow.Connection
	err = s.read(ctx, "list connections", owner, func(tx Tx) error {
		out, err = collect(ctx, tx, `SELECT `+connectionCols+` FROM connections WHERE user_id = $1 ORDER BY provider`,
			scanConnection, owner)
		return err
	})
	if err != nil {
		return []idflow.Connection{}, err
	}
	return out, nil
}

func scanCredential(r Row) (idflow.SealedCredential, error) {
	var c idflow.SealedCredential
	var scopes string
	if err := r.Scan(&c.Provider, &c.KeyID, &c.Ciphertext, &c.Status, &scopes, &c.ExpiresAt); err != nil {
		return c, err
	}
	var err error
	c.Scopes, err = decodeNames(scopes)
	return c, err
}

// GetCredential answers the caller's sealed credential for provider.
func (s *Store) GetCredential(ctx context.Context, p idflow.Principal, provider string) (idflow.SealedCredential, error) {
	return getOwned(ctx, s, p, "connection", `SELECT provider, key_id, ciphertext, status, scopes, expires_at
		FROM connections WHERE user_id = $1 AND provider = $2`, scanCredential, provider)
}

// PutCredential inserts or replaces the caller's credential for
// c.Provider; a replacement keeps created_at.
func (s *Store) PutCredential(ctx context.Context, p idflow.Principal, c idflow.SealedCredential) (idflow.Connection, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Connection{}, err
	}
	if err := c.Validate(); err != nil {
		return idflow.Connection{}, err
	}
	now := s.clock.now()
	var out idflow.Connection
	err = s.write(ctx, "put credential", owner, func(tx Tx) error {
		out, err = getOne(ctx, tx, "connection", `INSERT INTO connections
			(user_id, provider, key_id, ciphertext, status, scopes, expires_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
			ON CONFLICT (user_id, provider) DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext,
				status = excluded.status, scopes = excluded.scopes, expires_at = excluded.expires_at,
				updated_at = excluded.updated_at
			RETURNING `+connectionCols,
			scanConnection, owner, c.Provider, c.KeyID, c.Ciphertext, c.Status, namesJSON(c.Scopes), storedPtr(c.ExpiresAt), now)
		return err
	})
	if err != nil {
		return idflow.Connection{}, err
	}
	return out, nil
}

// SetConnectionStatus changes the status of the caller's connection.
func (s *Store) SetConnectionStatus(ctx context.Context, p idflow.Principal, provider, status string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if !idflow.ValidConnectionStatus(status) {
		return idflow.Errorf(idflow.EINVALID, "unknown connection status %q", status)
	}
	return s.write(ctx, "set connection status", owner, func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE connections SET status = $1, updated_at = $2 WHERE user_id = $3 AND provider = $4`,
			status, s.clock.now(), owner, provider)
		return affectedOne("connection", n, err)
	})
}

// DeleteCredential forgets the caller's credential for provider.
func (s *Store) DeleteCredential(ctx context.Context, p idflow.Principal, provider string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete credential", owner, func(tx Tx) error {
		n, err := tx.Exec(ctx, `DELETE FROM connections WHERE user_id = $1 AND provider = $2`, owner, provider)
		return affectedOne("connection", n, err)
	})
}

// SaveConnectState records a pending connect flow of the caller. Expired
// flows of the caller are dropped, and so are the oldest beyond
// MaxPendingStates.
func (s *Store) SaveConnectState(ctx context.Context, p idflow.Principal, cs idflow.ConnectState) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if err := cs.Validate(); err != nil {
		return err
	}
	now := s.clock.now()
	return s.write(ctx, "save connect state", owner, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM connect_states WHERE user_id = $1 AND expires_at <= $2`, owner, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO connect_states
			(user_id, state, provider, code_verifier, redirect_uri, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			owner, cs.State, cs.Provider, cs.CodeVerifier, cs.RedirectURI, stored(cs.ExpiresAt), now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM connect_states WHERE user_id = $1 AND state NOT IN (
			SELECT state FROM connect_states WHERE user_id = $1 ORDER BY created_at DESC, state DESC LIMIT $2)`,
			owner, MaxPendingStates)
		return err
	})
}

// TakeConnectState deletes and returns the caller's pending flow named
// state. Another user's state, an expired one and a used one are not found.
func (s *Store) TakeConnectState(ctx context.Context, p idflow.Principal, state string) (idflow.ConnectState, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.ConnectState{}, err
	}
	var cs idflow.ConnectState
	err = s.write(ctx, "take connect state", owner, func(tx Tx) error {
		cs, err = getOne(ctx, tx, "connect state", `DELETE FROM connect_states WHERE user_id = $1 AND state = $2
			RETURNING state, provider, code_verifier, redirect_uri, expires_at`,
			func(r Row) (idflow.ConnectState, error) {
				var cs idflow.ConnectState
				err := r.Scan(&cs.State, &cs.Provider, &cs.CodeVerifier, &cs.RedirectURI, &cs.ExpiresAt)
				return cs, err
			}, owner, state)
		return err
	})
	if err != nil {
		return idflow.ConnectState{}, err
	}
	if !time.Now().Before(cs.ExpiresAt) {
		return idflow.ConnectState{}, idflow.NotFound("connect state")
	}
	return cs, nil
}
