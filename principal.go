package idflow

import (
	"context"
	"slices"
	"time"
)

// Kind tells a user acting for themselves from an application acting for itself.
type Kind string

const (
	KindUser Kind = "user"
	KindApp  Kind = "app"
)

// AuthMethod names how a Principal was authenticated.
type AuthMethod string

const (
	AuthBearer         AuthMethod = "bearer"
	AuthSession        AuthMethod = "session"
	AuthProxyHeader    AuthMethod = "proxy_header"
	AuthProxyAssertion AuthMethod = "proxy_assertion"
	AuthJob            AuthMethod = "job" // rebuilt from a Snapshot by a background worker
	AuthPersonalToken  AuthMethod = "personal_token"

	// AuthLifecycle is the user an administrative action (deactivation,
	// erasure) acts on, to end what is theirs; never a request's caller.
	AuthLifecycle AuthMethod = "lifecycle"
)

// Principal is the one verified identity of a request. Only the auth package
// constructs one (a test over the source tree enforces it); everything else
// receives it and passes it on.
type Principal struct {
	UserID        string     `json:"user_id"`
	TenantID      string     `json:"tenant_id"`
	Email         string     `json:"email"`
	Name          string     `json:"name"`
	Roles         []string   `json:"roles"`
	Groups        []string   `json:"groups"`
	GroupsOverage bool       `json:"groups_overage,omitempty"`
	Scopes        []string   `json:"scopes"`
	Issuer        string     `json:"issuer"`
	Kind          Kind       `json:"kind"`
	AuthMethod    AuthMethod `json:"auth_method"`
	ClientID      string     `json:"client_id,omitempty"`
	ExpiresAt     time.Time  `json:"expires_at"`

	// Groups is what the policy counts: the token's groups and the
	// directory's. TokenGroups and DirectoryGroups say where they came
	// from: the token's groups claim (or a proxy's header), and SCIM.
	// auth's admit step merges them.
	TokenGroups     []string `json:"token_groups,omitempty"`
	DirectoryGroups []string `json:"directory_groups,omitempty"`
}

// HasRole reports whether the Principal holds role.
func (p Principal) HasRole(role string) bool { return role != "" && slices.Contains(p.Roles, role) }

// HasScope reports whether the Principal's token carries scope.
func (p Principal) HasScope(scope string) bool {
	return scope != "" && slices.Contains(p.Scopes, scope)
}

// HasGroup reports whether the Principal is a member of group.
func (p Principal) HasGroup(group string) bool {
	return group != "" && slices.Contains(p.Groups, group)
}

// Owner returns the user id that owns data written by p. It refuses anything
// but a verified user, so a zero or app-only Principal can never own or read
// user data, even if a handler forgot to check its kind.
func (p Principal) Owner() (string, error) {
	if p.Kind != KindUser || p.UserID == "" {
		return "", Errorf(EFORBIDDEN, "a user identity is required")
	}
	return p.UserID, nil
}

// Snapshot is what a background job carries instead of a token.
type Snapshot struct {
	UserID   string   `json:"user_id"`
	TenantID string   `json:"tenant_id"`
	Email    string   `json:"email,omitempty"`
	Name     string   `json:"name,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	Issuer   string   `json:"issuer,omitempty"`
}

// Snapshot copies the parts of p that a background job may act on.
func (p Principal) Snapshot() Snapshot {
	return Snapshot{UserID: p.UserID, TenantID: p.TenantID, Email: p.Email, Name: p.Name,
		Roles: slices.Clone(p.Roles), Groups: slices.Clone(p.Groups), Issuer: p.Issuer}
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the Principal in ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
