package idflow

import (
	"context"
	"time"
)

// BrowserSession is a signed-in browser, kept server-side. The cookie holds
// only a random id; the store keeps its SHA-256 (IDHash), the CSRF token and
// the user's tokens sealed with the vault key.
type BrowserSession struct {
	IDHash    string
	UserID    string
	CSRF      string
	KeyID     string
	Sealed    []byte
	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time // absolute end of the session
}

// Validate checks a browser session before it is stored: it belongs to a
// user (EFORBIDDEN otherwise: a session of nobody would sign nobody in).
func (s BrowserSession) Validate() error {
	if s.UserID == "" {
		return Errorf(EFORBIDDEN, "a user identity is required")
	}
	return nil
}

// BrowserSessionStore keeps browser sessions. It is looked up by the hash of
// a 256-bit secret before anyone is authenticated — the one store read that
// is not owner-scoped, because the secret is the credential. Updates and
// deletes also need the owner.
type BrowserSessionStore interface {
	CreateBrowserSession(ctx context.Context, s BrowserSession) error
	GetBrowserSession(ctx context.Context, idHash string) (BrowserSession, error)
	UpdateBrowserSession(ctx context.Context, s BrowserSession) error
	DeleteBrowserSession(ctx context.Context, idHash string) error
	// EndBrowserSessions deletes every browser session of p's user (a
	// deactivation), answering how many there were.
	EndBrowserSessions(ctx context.Context, p Principal) (int, error)
}
