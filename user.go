package idflow

import (
	"context"
	"strings"
	"time"
)

// User is what idflow remembers of a user it has seen.
type User struct {
	UserID    string    `json:"user_id"`
	TenantID  string    `json:"tenant_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Issuer    string    `json:"issuer"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// UserStore keeps what idflow remembers of the users it has seen.
type UserStore interface {
	// TouchUser records that p was seen.
	TouchUser(ctx context.Context, p Principal) error
	// AdminListUsers lists the users seen in the scope's tenant, most
	// recently first seen first.
	AdminListUsers(ctx context.Context, admin Principal, scope AdminScope, page Page) (List[User], error)
}

// Erased is what erasing a user removed that lives outside the store's
// tables: the ids of the user's chat sessions (cached by id), and how many
// audit events were re-chained.
type Erased struct {
	Sessions    []string
	AuditEvents int64
}

// ErasedPrefix starts the keyed hash that stands in the audit chain for an
// erased user's id: "erased:" and the hex HMAC-SHA-256 of the id under the
// server's erasure key (docs/SECURITY.md, "Erasure").
const ErasedPrefix = "erased:"

// IsErasedMark reports whether s has the form of an erased user's mark.
func IsErasedMark(s string) bool {
	rest, ok := strings.CutPrefix(s, ErasedPrefix)
	if !ok || len(rest) != 64 {
		return false
	}
	return strings.IndexFunc(rest, func(c rune) bool { return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') }) < 0
}

// UserEraser erases users (docs/SECURITY.md, "Erasure"): AdminGetUser finds a user within an
// admin's scope; EraseUser, called for that user (a Principal auth builds
// from the user's snapshot, as for a background job), removes every row of
// theirs and leaves only the mark in the audit chain.
type UserEraser interface {
	AdminGetUser(ctx context.Context, admin Principal, scope AdminScope, userID string) (User, error)
	EraseUser(ctx context.Context, p Principal, mark string) (Erased, error)
}
