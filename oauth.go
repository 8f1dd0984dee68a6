package idflow

import (
	"context"
	"errors"
	"time"
)

// idflow's own OAuth authorization server for /mcp (package authserver)
// keeps three things in the store: the clients that registered (RFC 7591),
// the grants users gave them, and the one-time secrets of the flow —
// authorization codes and refresh tokens, stored as SHA-256 hashes only.
// Clients are not user data. A grant and its secrets are: each row has its
// user_id, and every method but those that find a row by its secret takes
// the Principal.

// OAuthClient is a dynamically registered public client.
type OAuthClient struct {
	ID           string
	Name         string
	RedirectURIs []string
	CreatedAt    time.Time
	// ExpiresAt is when an unused registration is forgotten; nil once a
	// user has granted it access.
	ExpiresAt *time.Time
}

// OAuthGrant is a user's consent that a client may act for them on /mcp.
// Identity is the user as they were when they consented: the claims of
// the access tokens issued under the grant.
type OAuthGrant struct {
	ID          string     `json:"id"`
	UserID      string     `json:"user_id"`
	ClientID    string     `json:"client_id"`
	ClientName  string     `json:"client_name"`
	RedirectURI string     `json:"redirect_uri"`
	Scopes      []string   `json:"scopes"`
	Identity    Snapshot   `json:"-"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
}

// OAuthCode is a pending authorization code, found by the hash of the code.
type OAuthCode struct {
	Hash          string
	UserID        string
	GrantID       string
	ClientID      string
	RedirectURI   string
	CodeChallenge string // PKCE S256
	Resource      string
	Scopes        []string
	ExpiresAt     time.Time
}

// OAuthRefresh is a refresh token, found by the hash of the token. A
// rotated one is kept, marked used, so that its reuse is recognised.
type OAuthRefresh struct {
	Hash      string
	UserID    string
	GrantID   string
	ClientID  string
	Resource  string
	Scopes    []string
	ExpiresAt time.Time
}

// ErrRefreshReused marks a refresh token presented after it was rotated:
// the store has revoked its grant.
var ErrRefreshReused = errors.New("refresh token reused")

// OAuthStore keeps the authorization server's state.
type OAuthStore interface {
	// RegisterOAuthClient records c, forgetting expired unused
	// registrations first; with max or more left it refuses (ERATELIMIT).
	RegisterOAuthClient(ctx context.Context, c OAuthClient, max int) error
	// GetOAuthClient answers a registration that has not expired.
	GetOAuthClient(ctx context.Context, id string) (OAuthClient, error)

	// GrantOAuth records p's consent to g.ClientID: the active grant of p
	// for that client is updated (scopes, identity, redirect URI), or a
	// new one created; a registered client's registration no longer
	// expires. code is stored for the grant (its GrantID and UserID are
	// set here).
	GrantOAuth(ctx context.Context, p Principal, g OAuthGrant, code OAuthCode) (OAuthGrant, error)
	// ListOAuthGrants answers p's active grants, newest first.
	ListOAuthGrants(ctx context.Context, p Principal) ([]OAuthGrant, error)
	// RevokeOAuthGrant revokes p's grant id and deletes its codes and
	// refresh tokens; another user's grant is not found.
	RevokeOAuthGrant(ctx context.Context, p Principal, id string) error
	// RevokeOAuthGrantsOf revokes every active grant of userID, for the
	// deactivation of that user; the caller has authorized p to do it.
	// It answers how many it revoked.
	RevokeOAuthGrantsOf(ctx context.Context, p Principal, userID string) (int, error)
	// OAuthGrantActive answers nil when p has an active grant for clientID.
	OAuthGrantActive(ctx context.Context, p Principal, clientID string) error

	// RedeemOAuthCode takes (deletes) the code whose hash is codeHash and,
	// when it has not expired, check accepts it and its grant is active,
	// stores refresh for the code's grant and client (its GrantID, UserID,
	// ClientID and Scopes are the code's). The code is spent whatever the outcome.
	// It answers the code and the grant.
	RedeemOAuthCode(ctx context.Context, codeHash string, refresh OAuthRefresh, check func(OAuthCode) error) (OAuthCode, OAuthGrant, error)
	// RotateOAuthRefresh marks the refresh token whose hash is oldHash used
	// and stores next in its place for the same grant, client and scopes. A token already used
	// answers ErrRefreshReused (wrapped in an EUNAUTHORIZED *Error) after
	// revoking its grant; check, called with the old token before anything
	// is written, may refuse (a client mismatch).
	RotateOAuthRefresh(ctx context.Context, oldHash string, next OAuthRefresh, check func(OAuthRefresh) error) (OAuthRefresh, OAuthGrant, error)
}
