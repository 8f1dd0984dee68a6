package idflow

import (
	"context"
	"net/http"
	"time"
)

// Connection statuses.
const (
	ConnectionActive       = "active"
	ConnectionNeedsConsent = "needs_consent"
)

// Connection is a user's link to a downstream provider; its tokens stay sealed
// in the vault and never leave it in an API answer.
type Connection struct {
	Provider  string     `json:"provider"`
	UserID    string     `json:"user_id"`
	Status    string     `json:"status"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// SealedCredential is a user's downstream credential as stored: the
// ciphertext of its tokens (AES-256-GCM, associated data = user id and
// provider) and the id of the key that sealed it.
type SealedCredential struct {
	Provider   string
	KeyID      string
	Ciphertext []byte
	Status     string // ConnectionActive or ConnectionNeedsConsent
	Scopes     []string
	ExpiresAt  *time.Time
}

// ConnectState is a pending connect flow, bound to the user who started it.
type ConnectState struct {
	State        string
	Provider     string
	CodeVerifier string
	RedirectURI  string
	ExpiresAt    time.Time
}

// ConnectionStore keeps sealed downstream credentials, scoped to the owner.
type ConnectionStore interface {
	ListConnections(ctx context.Context, p Principal) ([]Connection, error)
	GetCredential(ctx context.Context, p Principal, provider string) (SealedCredential, error)
	// PutCredential inserts or replaces p's credential for c.Provider.
	PutCredential(ctx context.Context, p Principal, c SealedCredential) (Connection, error)
	SetConnectionStatus(ctx context.Context, p Principal, provider, status string) error
	DeleteCredential(ctx context.Context, p Principal, provider string) error
	// SaveConnectState records a pending flow of p; TakeConnectState returns
	// and deletes it, and answers not found for a state of another user or
	// one that expired.
	SaveConnectState(ctx context.Context, p Principal, s ConnectState) error
	TakeConnectState(ctx context.Context, p Principal, state string) (ConnectState, error)
}

// Downstream calls other services on a user's behalf, always with that
// user's own credential (from the vault, or a token exchange) — never a
// shared token, never the inbound token passed through.
type Downstream interface {
	ListConnections(ctx context.Context, p Principal) ([]Connection, error)
	// Do sends req (a path relative to the provider's API base) as p.
	Do(ctx context.Context, p Principal, provider string, req *http.Request) (*http.Response, error)
}
