package idflow

import (
	"context"
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
