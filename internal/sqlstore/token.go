package sqlstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/idflow/idflow"
)

// Personal access tokens are found by the hash of their secret before
// anyone is authenticated (Backend.BySecret, as browser sessions are);
// everything else is owner-scoped.

const (
	tokenCols     = `id, user_id, name, scopes, created_at, updated_at, expires_at, last_used_at`
	ListTokensSQL = `SELECT ` + tokenCols + ` FROM personal_tokens WHERE user_id = $1`
)

func scanToken(r Row) (idflow.PersonalToken, error) {
	var t idflow.PersonalToken
	var scopes string
	if err := r.Scan(&t.ID, &t.UserID, &t.Name, &scopes, &t.CreatedAt, &t.UpdatedAt, &t.ExpiresAt, &t.LastUsedAt); err != nil {
		return t, err
	}
	var err error
	t.Scopes, err = decodeNames(scopes)
	return t, err
}

func tokenKey(t idflow.PersonalToken) Cursor { return createdKey(t.CreatedAt, t.ID) }

// CreatePersonalToken stores t, owned by p and acting as p's Snapshot,
// under hash; at most MaxTokensPerUser of p's are live at once.
func (s *Store) CreatePersonalToken(ctx context.Context, p idflow.Principal, t idflow.PersonalToken, hash string) (idflow.PersonalToken, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.PersonalToken{}, err
	}
	if err := t.Validate(); err != nil {
		return idflow.PersonalToken{}, err
	}
	snapshot, err := json.Marshal(p.Snapshot())
	if err != nil {
		return idflow.PersonalToken{}, err
	}
	now := s.clock.now()
	t = idflow.PersonalToken{ID: idflow.NewID(idflow.PrefixToken), UserID: owner, Name: t.Name,
		Scopes: append([]string{}, t.Scopes...), CreatedAt: now, UpdatedAt: now, ExpiresAt: stored(t.ExpiresAt)}
	err = s.write(ctx, "create personal token", owner, func(tx Tx) error {
		var live int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM personal_tokens WHERE user_id = $1 AND expires_at > $2`, owner, now).Scan(&live); err != nil {
			return err
		}
		if live >= idflow.MaxTokensPerUser {
			return idflow.Errorf(idflow.ECONFLICT, "you have %d personal access tokens; revoke one first", live)
		}
		_, err := tx.Exec(ctx, `INSERT INTO personal_tokens (`+tokenCols+`, token_hash, owner_snapshot)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			t.ID, owner, t.Name, namesJSON(t.Scopes), now, now, t.ExpiresAt, nil, hash, string(snapshot))
		return err
	})
	if err != nil {
		return idflow.PersonalToken{}, err
	}
	return t, nil
}

func (s *Store) ListPersonalTokens(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.PersonalToken], error) {
	return listOwned(ctx, s, p, "list personal tokens", ListTokensSQL, nil, ByCreated, page, scanToken, tokenKey)
}

func (s *Store) DeletePersonalToken(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete personal token", owner, func(tx Tx) error {
		return deleteOwned(ctx, tx, "personal_tokens", "token", owner, id)
	})
}

// LookupPersonalToken answers the live token whose secret hashes to hash;
// an expired or revoked one is not found.
func (s *Store) LookupPersonalToken(ctx context.Context, hash string) (idflow.TokenGrant, error) {
	var g idflow.TokenGrant
	err := s.b.BySecret(ctx, hash, "", false, func(tx Tx) error {
		var snapshot string
		var err error
		g, err = getOne(ctx, tx, "token", `SELECT `+tokenCols+`, token_hash, owner_snapshot FROM personal_tokens
			WHERE token_hash = $1 AND expires_at > $2`, func(r Row) (idflow.TokenGrant, error) {
			var g idflow.TokenGrant
			var scopes string
			t := &g.Token
			if err := r.Scan(&t.ID, &t.UserID, &t.Name, &scopes, &t.CreatedAt, &t.UpdatedAt, &t.ExpiresAt, &t.LastUsedAt,
				&g.Hash, &snapshot); err != nil {
				return g, err
			}
			var err error
			t.Scopes, err = decodeNames(scopes)
			return g, err
		}, hash, s.clock.now())
		if err != nil {
			return err
		}
		g.Owner, err = DecodeSnapshot(snapshot, g.Token.UserID)
		return err
	})
	return g, s.fail("lookup personal token", err)
}

// TouchPersonalToken records the last use of p's token id.
func (s *Store) TouchPersonalToken(ctx context.Context, p idflow.Principal, id string, at time.Time) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "touch personal token", owner, func(tx Tx) error {
		_, err := tx.Exec(ctx, `UPDATE personal_tokens SET last_used_at = $1 WHERE user_id = $2 AND id = $3`, stored(at), owner, id)
		return err
	})
}
