package sqlstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/idflow/idflow"
)

// The OAuthStore of idflow's authorization server for /mcp. Clients are
// read and written on the System path (they are not user data); grants
// behind the owner predicate; codes and refresh tokens are found by the
// hash of their secret (Backend.BySecret), which then tells whose they are.

// MaxPendingCodes bounds the authorization codes one user may have
// waiting; older ones are dropped when a new one is issued.
const MaxPendingCodes = 20

const (
	oauthClientCols  = `client_id, client_name, redirect_uris, created_at, expires_at`
	oauthGrantCols   = `id, user_id, client_id, client_name, redirect_uri, scopes, identity, created_at, updated_at, revoked_at`
	oauthCodeCols    = `code_hash, user_id, grant_id, client_id, redirect_uri, code_challenge, resource, scopes, expires_at`
	oauthRefreshCols = `token_hash, user_id, grant_id, client_id, resource, scopes, expires_at`
)

func scanOAuthClient(r Row) (idflow.OAuthClient, error) {
	var c idflow.OAuthClient
	var uris string
	if err := r.Scan(&c.ID, &c.Name, &uris, &c.CreatedAt, &c.ExpiresAt); err != nil {
		return c, err
	}
	var err error
	c.RedirectURIs, err = decodeNames(uris)
	return c, err
}

func scanOAuthGrant(r Row) (idflow.OAuthGrant, error) {
	var g idflow.OAuthGrant
	var scopes, identity string
	if err := r.Scan(&g.ID, &g.UserID, &g.ClientID, &g.ClientName, &g.RedirectURI, &scopes, &identity,
		&g.CreatedAt, &g.UpdatedAt, &g.RevokedAt); err != nil {
		return g, err
	}
	var err error
	if g.Scopes, err = decodeNames(scopes); err != nil {
		return g, err
	}
	return g, json.Unmarshal([]byte(identity), &g.Identity)
}

func scanOAuthCode(r Row) (idflow.OAuthCode, error) {
	var c idflow.OAuthCode
	var scopes string
	if err := r.Scan(&c.Hash, &c.UserID, &c.GrantID, &c.ClientID, &c.RedirectURI, &c.CodeChallenge, &c.Resource,
		&scopes, &c.ExpiresAt); err != nil {
		return c, err
	}
	var err error
	c.Scopes, err = decodeNames(scopes)
	return c, err
}

// refreshRow is a refresh token as stored, with whether it was used.
type refreshRow struct {
	idflow.OAuthRefresh
	used bool
}

func scanRefreshRow(r Row) (refreshRow, error) {
	var t refreshRow
	var scopes string
	var usedAt *time.Time
	if err := r.Scan(&t.Hash, &t.UserID, &t.GrantID, &t.ClientID, &t.Resource, &scopes, &t.ExpiresAt, &usedAt); err != nil {
		return t, err
	}
	t.used = usedAt != nil
	var err error
	t.Scopes, err = decodeNames(scopes)
	return t, err
}

// RegisterOAuthClient records a registration, after forgetting expired
// unused ones; with max or more left it refuses.
func (s *Store) RegisterOAuthClient(ctx context.Context, c idflow.OAuthClient, max int) error {
	if c.ID == "" || len(c.RedirectURIs) == 0 {
		return idflow.Errorf(idflow.EINVALID, "a client needs an id and a redirect URI")
	}
	now := s.clock.now()
	return s.system(ctx, "register oauth client", true, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM oauth_clients WHERE expires_at IS NOT NULL AND expires_at <= $1`, now); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM oauth_clients`).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return idflow.Errorf(idflow.ERATELIMIT, "too many registered clients; try again later")
		}
		_, err := tx.Exec(ctx, `INSERT INTO oauth_clients (`+oauthClientCols+`) VALUES ($1, $2, $3, $4, $5)`,
			c.ID, c.Name, namesJSON(c.RedirectURIs), now, storedPtr(c.ExpiresAt))
		return err
	})
}

// GetOAuthClient answers a registration that has not expired.
func (s *Store) GetOAuthClient(ctx context.Context, id string) (idflow.OAuthClient, error) {
	var c idflow.OAuthClient
	err := s.system(ctx, "get oauth client", false, func(tx Tx) error {
		var err error
		c, err = getOne(ctx, tx, "client", `SELECT `+oauthClientCols+` FROM oauth_clients
			WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)`, scanOAuthClient, id, s.clock.now())
		return err
	})
	return c, err
}

// GrantOAuth records p's consent and the code that carries it to the client.
func (s *Store) GrantOAuth(ctx context.Context, p idflow.Principal, g idflow.OAuthGrant, code idflow.OAuthCode) (idflow.OAuthGrant, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.OAuthGrant{}, err
	}
	if g.ClientID == "" || code.Hash == "" || code.CodeChallenge == "" {
		return idflow.OAuthGrant{}, idflow.Errorf(idflow.EINVALID, "a grant needs a client, a code and its challenge")
	}
	identity, err := json.Marshal(g.Identity)
	if err != nil {
		return idflow.OAuthGrant{}, err
	}
	now := s.clock.now()
	var out idflow.OAuthGrant
	err = s.write(ctx, "grant oauth", owner, func(tx Tx) error {
		out, err = getOne(ctx, tx, "grant", `UPDATE oauth_grants SET client_name = $1, redirect_uri = $2, scopes = $3,
			identity = $4, updated_at = $5 WHERE user_id = $6 AND client_id = $7 AND revoked_at IS NULL RETURNING `+oauthGrantCols,
			scanOAuthGrant, g.ClientName, g.RedirectURI, namesJSON(g.Scopes), string(identity), now, owner, g.ClientID)
		if idflow.ErrorCode(err) == idflow.ENOTFOUND {
			out, err = getOne(ctx, tx, "grant", `INSERT INTO oauth_grants (`+oauthGrantCols+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL) RETURNING `+oauthGrantCols,
				scanOAuthGrant, idflow.NewID("grt_"), owner, g.ClientID, g.ClientName, g.RedirectURI, namesJSON(g.Scopes),
				string(identity), now)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE oauth_clients SET expires_at = NULL WHERE client_id = $1 AND expires_at IS NOT NULL`,
			g.ClientID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM oauth_codes WHERE user_id = $1 AND expires_at <= $2`, owner, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO oauth_codes (`+oauthCodeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			code.Hash, owner, out.ID, code.ClientID, code.RedirectURI, code.CodeChallenge, code.Resource,
			namesJSON(code.Scopes), stored(code.ExpiresAt)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM oauth_codes WHERE user_id = $1 AND code_hash NOT IN (
			SELECT code_hash FROM oauth_codes WHERE user_id = $1 ORDER BY expires_at DESC, code_hash DESC LIMIT $2)`,
			owner, MaxPendingCodes)
		return err
	})
	if err != nil {
		return idflow.OAuthGrant{}, err
	}
	return out, nil
}

// maxGrantsListed bounds the answer of ListOAuthGrants.
const maxGrantsListed = 200

// ListOAuthGrants answers p's active grants, newest first.
func (s *Store) ListOAuthGrants(ctx context.Context, p idflow.Principal) ([]idflow.OAuthGrant, error) {
	owner, err := p.Owner()
	if err != nil {
		return []idflow.OAuthGrant{}, err
	}
	var out []idflow.OAuthGrant
	err = s.read(ctx, "list oauth grants", owner, func(tx Tx) error {
		out, err = collect(ctx, tx, `SELECT `+oauthGrantCols+` FROM oauth_grants WHERE user_id = $1 AND revoked_at IS NULL
			ORDER BY created_at DESC, id DESC LIMIT $2`, scanOAuthGrant, owner, maxGrantsListed)
		return err
	})
	if err != nil {
		return []idflow.OAuthGrant{}, err
	}
	return out, nil
}

// revokeGrants revokes owner's active grants (all of them when id is "")
// and deletes their codes and refresh tokens; it answers how many.
func (s *Store) revokeGrants(ctx context.Context, tx Tx, owner, id string) (int64, error) {
	now := s.clock.now()
	if id != "" {
		n, err := tx.Exec(ctx, `UPDATE oauth_grants SET revoked_at = $1, updated_at = $1
			WHERE user_id = $2 AND id = $3 AND revoked_at IS NULL`, now, owner, id)
		if err != nil || n == 0 {
			return n, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM oauth_codes WHERE user_id = $1 AND grant_id = $2`, owner, id); err != nil {
			return n, err
		}
		_, err = tx.Exec(ctx, `DELETE FROM oauth_refresh_tokens WHERE user_id = $1 AND grant_id = $2`, owner, id)
		return n, err
	}
	n, err := tx.Exec(ctx, `UPDATE oauth_grants SET revoked_at = $1, updated_at = $1 WHERE user_id = $2 AND revoked_at IS NULL`, now, owner)
	if err != nil {
		return n, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM oauth_codes WHERE user_id = $1`, owner); err != nil {
		return n, err
	}
	_, err = tx.Exec(ctx, `DELETE FROM oauth_refresh_tokens WHERE user_id = $1`, owner)
	return n, err
}

// RevokeOAuthGrant revokes p's grant id.
func (s *Store) RevokeOAuthGrant(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	if id == "" {
		return idflow.NotFound("grant")
	}
	return s.write(ctx, "revoke oauth grant", owner, func(tx Tx) error {
		n, err := s.revokeGrants(ctx, tx, owner, id)
		return affectedOne("grant", n, err)
	})
}

// RevokeOAuthGrantsOf revokes every grant of userID (deactivation).
func (s *Store) RevokeOAuthGrantsOf(ctx context.Context, p idflow.Principal, userID string) (int, error) {
	if p.UserID == "" {
		return 0, idflow.Errorf(idflow.EFORBIDDEN, "a verified caller is required")
	}
	if userID == "" {
		return 0, idflow.NotFound("user")
	}
	var n int64
	err := s.write(ctx, "revoke oauth grants of user", userID, func(tx Tx) error {
		var err error
		n, err = s.revokeGrants(ctx, tx, userID, "")
		return err
	})
	return int(n), err
}

// OAuthGrantActive answers nil when p's grant for clientID stands.
func (s *Store) OAuthGrantActive(ctx context.Context, p idflow.Principal, clientID string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.read(ctx, "oauth grant active", owner, func(tx Tx) error {
		var one int
		_, err := getOne(ctx, tx, "grant", `SELECT 1 FROM oauth_grants WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL`,
			func(r Row) (int, error) { return one, r.Scan(&one) }, owner, clientID)
		return err
	})
}

// activeGrant reads owner's grant id when it is not revoked.
func activeGrant(ctx context.Context, tx Tx, owner, id string) (idflow.OAuthGrant, error) {
	return getOne(ctx, tx, "grant", `SELECT `+oauthGrantCols+` FROM oauth_grants WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL`,
		scanOAuthGrant, owner, id)
}

// insertRefresh stores t, and forgets owner's refresh tokens that expired.
func (s *Store) insertRefresh(ctx context.Context, tx Tx, t idflow.OAuthRefresh) error {
	now := s.clock.now()
	if _, err := tx.Exec(ctx, `DELETE FROM oauth_refresh_tokens WHERE user_id = $1 AND expires_at <= $2`, t.UserID, now); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO oauth_refresh_tokens (`+oauthRefreshCols+`, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		t.Hash, t.UserID, t.GrantID, t.ClientID, t.Resource, namesJSON(t.Scopes), stored(t.ExpiresAt), now)
	return err
}

// RedeemOAuthCode takes the code, then stores refresh for its grant.
func (s *Store) RedeemOAuthCode(ctx context.Context, codeHash string, refresh idflow.OAuthRefresh, check func(idflow.OAuthCode) error) (idflow.OAuthCode, idflow.OAuthGrant, error) {
	var code idflow.OAuthCode
	var grant idflow.OAuthGrant
	if codeHash == "" || refresh.Hash == "" {
		return code, grant, idflow.NotFound("authorization code")
	}
	// The code is spent by this first transaction, whatever follows.
	err := s.fail("take oauth code", s.b.BySecret(ctx, codeHash, "", true, func(tx Tx) error {
		var err error
		code, err = getOne(ctx, tx, "authorization code", `DELETE FROM oauth_codes WHERE code_hash = $1 RETURNING `+oauthCodeCols,
			scanOAuthCode, codeHash)
		return err
	}))
	if err != nil {
		return idflow.OAuthCode{}, grant, err
	}
	if !s.clock.now().Before(code.ExpiresAt) {
		return idflow.OAuthCode{}, grant, idflow.NotFound("authorization code")
	}
	if check != nil {
		if err := check(code); err != nil {
			return idflow.OAuthCode{}, grant, err
		}
	}
	refresh.UserID, refresh.GrantID, refresh.ClientID, refresh.Scopes = code.UserID, code.GrantID, code.ClientID, code.Scopes
	err = s.fail("store oauth refresh token", s.b.BySecret(ctx, refresh.Hash, code.UserID, true, func(tx Tx) error {
		var err error
		if grant, err = activeGrant(ctx, tx, code.UserID, code.GrantID); err != nil {
			return err
		}
		return s.insertRefresh(ctx, tx, refresh)
	}))
	if err != nil {
		return idflow.OAuthCode{}, idflow.OAuthGrant{}, err
	}
	return code, grant, nil
}

// RotateOAuthRefresh spends the refresh token oldHash and stores next in
// its place; a token spent before revokes its grant.
func (s *Store) RotateOAuthRefresh(ctx context.Context, oldHash string, next idflow.OAuthRefresh, check func(idflow.OAuthRefresh) error) (idflow.OAuthRefresh, idflow.OAuthGrant, error) {
	var old refreshRow
	var grant idflow.OAuthGrant
	if oldHash == "" || next.Hash == "" {
		return old.OAuthRefresh, grant, idflow.NotFound("refresh token")
	}
	reused := false
	err := s.fail("spend oauth refresh token", s.b.BySecret(ctx, oldHash, "", true, func(tx Tx) error {
		var err error
		old, err = getOne(ctx, tx, "refresh token", `SELECT `+oauthRefreshCols+`, used_at FROM oauth_refresh_tokens
			WHERE token_hash = $1`, scanRefreshRow, oldHash)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(old.OAuthRefresh); err != nil {
				return err
			}
		}
		if old.used {
			reused = true
			return nil
		}
		if !s.clock.now().Before(old.ExpiresAt) {
			return idflow.NotFound("refresh token")
		}
		n, err := tx.Exec(ctx, `UPDATE oauth_refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL`,
			s.clock.now(), oldHash)
		if err == nil && n == 0 {
			reused = true // spent concurrently
		}
		return err
	}))
	if err != nil {
		return idflow.OAuthRefresh{}, grant, err
	}
	if reused {
		err := s.write(ctx, "revoke reused oauth grant", old.UserID, func(tx Tx) error {
			_, err := s.revokeGrants(ctx, tx, old.UserID, old.GrantID)
			return err
		})
		if err != nil {
			return idflow.OAuthRefresh{}, grant, err
		}
		return old.OAuthRefresh, grant, idflow.WrapError(idflow.EUNAUTHORIZED, "refresh token reused; its grant is revoked", idflow.ErrRefreshReused)
	}
	next.UserID, next.GrantID, next.ClientID, next.Scopes = old.UserID, old.GrantID, old.ClientID, old.Scopes
	err = s.fail("store oauth refresh token", s.b.BySecret(ctx, next.Hash, old.UserID, true, func(tx Tx) error {
		var err error
		if grant, err = activeGrant(ctx, tx, old.UserID, old.GrantID); err != nil {
			return err
		}
		return s.insertRefresh(ctx, tx, next)
	}))
	if err != nil {
		return idflow.OAuthRefresh{}, idflow.OAuthGrant{}, err
	}
	return old.OAuthRefresh, grant, nil
}
