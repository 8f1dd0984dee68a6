package idflow

import (
	"context"
	"slices"
	"time"
)

// PrefixToken is the id prefix of a personal access token (not the token:
// the token itself starts with TokenSecretPrefix and is never stored).
const PrefixToken = "pat_"

// TokenSecretPrefix starts every personal access token, so that a leaked
// one is recognisable (secret scanners, logs) and never taken for a JWT.
const TokenSecretPrefix = "idf_pat_"

// Personal access token scopes (docs/SECURITY.md, "Personal access
// tokens"). A PAT acts as its user with at most these; each route needs
// one of them, or refuses PATs altogether (tokens, admin, internal, SCIM).
const (
	ScopeRead  = "read"  // GET routes of the API (and a run's WebSocket)
	ScopeWrite = "write" // routes that create, change or delete
	ScopeAgent = "agent" // agent turns and workflow runs: the model and tools act as the user
	ScopeMCP   = "mcp"   // /mcp
)

// TokenScopes are the scopes a PAT may carry, in the order they are shown.
var TokenScopes = []string{ScopeRead, ScopeWrite, ScopeAgent, ScopeMCP}

// Bounds of personal access tokens.
const (
	DefaultTokenLifetime = 90 * 24 * time.Hour
	MaxTokenLifetime     = 365 * 24 * time.Hour
	MinTokenLifetime     = time.Minute
	MaxTokensPerUser     = 50 // live (unexpired) tokens
)

// PersonalToken is a personal access token as its owner sees it: never the
// token itself, which is shown once, at creation, and stored as a hash.
type PersonalToken struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"` // nil: never used
}

// Validate checks a token a user asks for: a name, known scopes (at least
// one, none twice), an expiry. It trims the name.
func (t *PersonalToken) Validate() error {
	var err error
	if t.Name, err = CheckText("name", t.Name, MaxNameLen, true); err != nil {
		return err
	}
	if len(t.Scopes) == 0 {
		return Errorf(EINVALID, "scopes: at least one of %v is required", TokenScopes)
	}
	for i, s := range t.Scopes {
		if !slices.Contains(TokenScopes, s) {
			return Errorf(EINVALID, "scopes: %q is not a scope (%v)", s, TokenScopes)
		}
		if slices.Contains(t.Scopes[:i], s) {
			return Errorf(EINVALID, "scopes: %q is listed twice", s)
		}
	}
	if t.ExpiresAt.IsZero() {
		return Errorf(EINVALID, "expires_at is required")
	}
	return nil
}

// TokenGrant is what a personal access token acts as: its owner's identity
// as it was when the token was made (a Snapshot, as a background run
// carries), its scopes and expiry. Only package auth turns it into a
// Principal.
type TokenGrant struct {
	Token PersonalToken
	Hash  string // hex SHA-256 of the token
	Owner Snapshot
}

// PersonalTokenStore keeps personal access tokens. LookupPersonalToken is
// a read by the hash of a 256-bit secret before anyone is authenticated,
// as for browser sessions: the secret is the credential. Everything else is
// owner-scoped.
type PersonalTokenStore interface {
	// CreatePersonalToken stores t for p, with p's Snapshot, under hash;
	// it refuses (ECONFLICT) when p already has MaxTokensPerUser live ones.
	CreatePersonalToken(ctx context.Context, p Principal, t PersonalToken, hash string) (PersonalToken, error)
	// ListPersonalTokens lists p's tokens, expired ones included, newest first.
	ListPersonalTokens(ctx context.Context, p Principal, page Page) (List[PersonalToken], error)
	// DeletePersonalToken revokes p's token id.
	DeletePersonalToken(ctx context.Context, p Principal, id string) error
	// LookupPersonalToken answers the live (unexpired) token of hash.
	LookupPersonalToken(ctx context.Context, hash string) (TokenGrant, error)
	// TouchPersonalToken records that p's token id was used at at.
	TouchPersonalToken(ctx context.Context, p Principal, id string, at time.Time) error
}
