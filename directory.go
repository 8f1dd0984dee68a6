package idflow

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Id prefixes of what a directory provisions over SCIM.
const (
	PrefixDirectoryUser  = "scu_"
	PrefixDirectoryGroup = "scg_"
)

// Bounds of what a directory may push.
const (
	MaxDirectoryNameLen    = 256      // characters of userName, externalId, displayName
	MaxDirectoryAttributes = 64 << 10 // a user's stored SCIM document, in bytes
	MaxGroupMembers        = 50_000
	MaxDirectoryPage       = 200
)

// ErrStale is the cause of the ECONFLICT of a Replace… whose resource
// changed since it was read.
var ErrStale = errors.New("the resource changed since it was read")

// DirectoryScope is the tenant a SCIM client provisions: always the
// tenant of its own app-only token, never one named in a request. Like
// AdminScope it is built from the verified Principal (NewDirectoryScope)
// and every Directory… store method checks it against its caller; the
// zero value provisions nobody.
type DirectoryScope struct {
	client string
	tenant string
	valid  bool
}

// NewDirectoryScope answers the scope of p: an app-only token whose
// client id is one of clients (IDFLOW_SCIM_CLIENTS) provisions its own
// tenant. Anything else is refused with EFORBIDDEN.
func NewDirectoryScope(p Principal, clients []string) (DirectoryScope, error) {
	if p.Kind != KindApp || p.ClientID == "" {
		return DirectoryScope{}, Errorf(EFORBIDDEN, "SCIM is for app-only tokens of a provisioning client")
	}
	if !slices.Contains(clients, p.ClientID) {
		return DirectoryScope{}, Errorf(EFORBIDDEN, "this client is not allowed to provision users (IDFLOW_SCIM_CLIENTS)")
	}
	return DirectoryScope{client: p.ClientID, tenant: p.TenantID, valid: true}, nil
}

// For answers the tenant s provisions, refusing the zero scope and a scope
// built for another caller.
func (s DirectoryScope) For(p Principal) (tenant string, err error) {
	if !s.valid || p.Kind != KindApp || p.ClientID != s.client || p.TenantID != s.tenant {
		return "", Errorf(EFORBIDDEN, "no directory scope for this caller")
	}
	return s.tenant, nil
}

// DirectoryUser is a user as a directory provisioned it (SCIM User). Its
// UserID — the SCIM externalId, or the resource's own id when the
// directory sends none — is the user id idflow knows the user by: Entra's
// oid, the issuer's sub.
type DirectoryUser struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	UserID      string    `json:"user_id"`
	UserName    string    `json:"user_name"`
	ExternalID  string    `json:"external_id"`
	DisplayName string    `json:"display_name"`
	Active      bool      `json:"active"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Attributes is the SCIM document as the directory last wrote it
	// (without id, meta and active, which idflow answers itself).
	Attributes json.RawMessage `json:"attributes"`
}

// Validate checks what a directory sends of a user, and fills UserID.
func (u *DirectoryUser) Validate() error {
	var err error
	if u.UserName, err = CheckText("userName", u.UserName, MaxDirectoryNameLen, true); err != nil {
		return err
	}
	if u.ExternalID, err = CheckText("externalId", u.ExternalID, MaxDirectoryNameLen, false); err != nil {
		return err
	}
	if u.DisplayName, err = CheckText("displayName", u.DisplayName, MaxDirectoryNameLen, false); err != nil {
		return err
	}
	if len(u.Attributes) > MaxDirectoryAttributes {
		return Errorf(ETOOLARGE, "the user's attributes are larger than %d bytes", MaxDirectoryAttributes)
	}
	u.UserID = u.ExternalID
	if u.UserID == "" {
		u.UserID = u.ID
	}
	return nil
}

// DirectoryGroup is a group as a directory provisioned it (SCIM Group).
// Its members are directory users of the same tenant.
type DirectoryGroup struct {
	ID          string          `json:"id"`
	TenantID    string          `json:"tenant_id"`
	DisplayName string          `json:"display_name"`
	ExternalID  string          `json:"external_id"`
	Members     []GroupMember   `json:"members"`
	Version     int64           `json:"version"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	Attributes  json.RawMessage `json:"attributes"`
}

// GroupMember is one member of a directory group: the directory user's
// SCIM id (Value) and, as stored, its user id and display name.
type GroupMember struct {
	Value   string `json:"value"`
	UserID  string `json:"user_id"`
	Display string `json:"display"`
}

// Validate checks what a directory sends of a group.
func (g *DirectoryGroup) Validate() error {
	var err error
	if g.DisplayName, err = CheckText("displayName", g.DisplayName, MaxDirectoryNameLen, true); err != nil {
		return err
	}
	if g.ExternalID, err = CheckText("externalId", g.ExternalID, MaxDirectoryNameLen, false); err != nil {
		return err
	}
	if len(g.Members) > MaxGroupMembers {
		return Errorf(ETOOLARGE, "a group has at most %d members", MaxGroupMembers)
	}
	if len(g.Attributes) > MaxDirectoryAttributes {
		return Errorf(ETOOLARGE, "the group's attributes are larger than %d bytes", MaxDirectoryAttributes)
	}
	return nil
}

// DirectoryFilter selects directory users or groups: every set field must
// match (SCIM `eq` joined by `and`). UserName and DisplayName compare
// case-insensitively (RFC 7643: caseExact false), the others exactly.
type DirectoryFilter struct {
	ID, UserName, ExternalID, DisplayName *string
	// Member keeps groups that have this directory user as a member.
	Member *string
	// WithMembers reads groups' members (SCIM excludedAttributes=members
	// turns it off: Entra asks so for every lookup of a group).
	WithMembers bool
}

// DirectoryPage is SCIM's paging: StartIndex counts from 1.
type DirectoryPage struct {
	StartIndex, Count int
}

// DirectoryList is one page of a SCIM list and the number of all matches.
type DirectoryList[T any] struct {
	Items []T
	Total int
}

// UserRef names a user within a tenant. The same user id in two tenants
// names two users: a tenant's directory can never disable another's.
type UserRef struct {
	TenantID string `json:"tenant_id"`
	UserID   string `json:"user_id"`
}

// UserState is whether a user may act: disabled users are refused on every
// channel (auth's revocation check), on every replica.
type UserState struct {
	UserRef
	Disabled  bool      `json:"disabled"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DirectoryStore keeps what directories provision (SCIM users and groups,
// per tenant) and the lifecycle state of users.
type DirectoryStore interface {
	CreateDirectoryUser(ctx context.Context, p Principal, scope DirectoryScope, u DirectoryUser) (DirectoryUser, error)
	GetDirectoryUser(ctx context.Context, p Principal, scope DirectoryScope, id string) (DirectoryUser, error)
	ListDirectoryUsers(ctx context.Context, p Principal, scope DirectoryScope, f DirectoryFilter, page DirectoryPage) (DirectoryList[DirectoryUser], error)
	// ReplaceDirectoryUser stores u (active included) if the stored
	// version is still u.Version (else ECONFLICT), and answers it with its
	// next version.
	ReplaceDirectoryUser(ctx context.Context, p Principal, scope DirectoryScope, u DirectoryUser) (DirectoryUser, error)
	// DeleteDirectoryUser forgets the directory's user and its
	// memberships (not the user's data: erasure does that).
	DeleteDirectoryUser(ctx context.Context, p Principal, scope DirectoryScope, id string) (DirectoryUser, error)

	CreateDirectoryGroup(ctx context.Context, p Principal, scope DirectoryScope, g DirectoryGroup) (DirectoryGroup, error)
	GetDirectoryGroup(ctx context.Context, p Principal, scope DirectoryScope, id string, withMembers bool) (DirectoryGroup, error)
	ListDirectoryGroups(ctx context.Context, p Principal, scope DirectoryScope, f DirectoryFilter, page DirectoryPage) (DirectoryList[DirectoryGroup], error)
	// ReplaceDirectoryGroup stores g's name and attributes, and its
	// members when members is true, if the stored version is still
	// g.Version (else ECONFLICT).
	ReplaceDirectoryGroup(ctx context.Context, p Principal, scope DirectoryScope, g DirectoryGroup, members bool) (DirectoryGroup, error)
	// ChangeGroupMembers adds and removes members by directory user id
	// (SCIM PATCH members), without reading the whole group.
	ChangeGroupMembers(ctx context.Context, p Principal, scope DirectoryScope, groupID string, add, remove []string) (DirectoryGroup, error)
	DeleteDirectoryGroup(ctx context.Context, p Principal, scope DirectoryScope, id string) (DirectoryGroup, error)

	// AdminSetUserDisabled disables or re-enables a user of the admin's
	// scope: a user idflow has seen or a directory has provisioned
	// (ENOTFOUND otherwise).
	AdminSetUserDisabled(ctx context.Context, admin Principal, scope AdminScope, userID string, disabled bool) (UserState, error)

	// DirectoryGroupsOf answers the groups the directory of p's tenant
	// gives p, for the authentication layer: each group's externalId
	// (Entra: its object id, as in a token's groups claim) and displayName.
	DirectoryGroupsOf(ctx context.Context, p Principal) ([]string, error)
	// DisabledUsers answers every disabled user, for the authentication
	// layer's revocation set.
	DisabledUsers(ctx context.Context) ([]UserRef, error)
}

// GroupChange is what a PATCH of a group changes: its document (Group,
// when DocChanged), and its members either as a whole new list
// (ReplaceMembers, Members) or as directory user ids to Add and Remove, so
// that adding one member to a large group reads none of the others.
type GroupChange struct {
	Group          DirectoryGroup
	DocChanged     bool
	ReplaceMembers bool
	Members        []GroupMember
	Add, Remove    []string
}
