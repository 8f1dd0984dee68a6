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

// ValidConnectionStatus reports whether s is a status a connection can have.
func ValidConnectionStatus(s string) bool {
	return s == ConnectionActive || s == ConnectionNeedsConsent
}

// Validate checks a credential before it is stored: it needs a provider,
// a key id and a ciphertext, and a known status (none is
// ConnectionActive; Validate then sets it).
func (c *SealedCredential) Validate() error {
	if c.Provider == "" || c.KeyID == "" || len(c.Ciphertext) == 0 {
		return Errorf(EINVALID, "a credential needs a provider, a key id and a ciphertext")
	}
	if c.Status == "" {
		c.Status = ConnectionActive
	}
	if !ValidConnectionStatus(c.Status) {
		return Errorf(EINVALID, "unknown connection status %q", c.Status)
	}
	return nil
}

// ConnectState is a pending connect flow, bound to the user who started it.
type ConnectState struct {
	State        string
	Provider     string
	CodeVerifier string
	RedirectURI  string
	ExpiresAt    time.Time
}

// Validate checks a connect flow before it is stored: it needs a state, a
// provider and an expiry.
func (s ConnectState) Validate() error {
	if s.State == "" || s.Provider == "" || s.ExpiresAt.IsZero() {
		return Errorf(EINVALID, "a connect state needs a state, a provider and an expiry")
	}
	return nil
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
