package idflow

import "strconv"

// AdminRoles names the roles that make a verified user an administrator.
type AdminRoles struct {
	// Tenant administers the users of the admin's own tenant
	// (IDFLOW_ADMIN_ROLE).
	Tenant string
	// Platform administers every tenant (IDFLOW_PLATFORM_ADMIN_ROLE); empty,
	// the default, means nobody does.
	Platform string
}

// AdminScope is whose data an admin may read: the users of one tenant, or
// — for a platform admin only — every tenant. It is the one place the
// tenant rule lives: service builds it with NewAdminScope from the verified
// Principal and the configured roles, and every Admin… store method takes it
// and turns it into SQL (and, on PostgreSQL, into the admin_read policies).
// The tenant always comes from the Principal, never from a request. The
// zero value administers nobody: every Admin… method refuses it.
//
// An admin whose Principal has no tenant (an IdP without tenants, a proxy
// header without one) administers the users with no tenant, and the events
// of requests nobody was authenticated for, which carry no tenant either.
type AdminScope struct {
	actor  string // the admin's own user id
	tenant string
	all    bool
	valid  bool
}

// NewAdminScope answers the scope of p: every tenant when p holds the
// platform role, p's own tenant when p holds the tenant admin role (the
// platform role wins when p holds both), and EFORBIDDEN otherwise — also
// for anything but a verified user.
func NewAdminScope(p Principal, roles AdminRoles) (AdminScope, error) {
	actor, err := p.Owner()
	if err != nil {
		return AdminScope{}, err
	}
	switch {
	case p.HasRole(roles.Platform):
		return AdminScope{actor: actor, all: true, valid: true}, nil
	case p.HasRole(roles.Tenant):
		return AdminScope{actor: actor, tenant: p.TenantID, valid: true}, nil
	}
	return AdminScope{}, Errorf(EFORBIDDEN, "an admin role is required")
}

// For answers what s lets admin read: the users of tenant, or every tenant
// when all is true. It refuses the zero scope, a scope built for another
// Principal, and anything but a verified user, so a store cannot be handed
// a scope that does not belong to the caller.
func (s AdminScope) For(admin Principal) (tenant string, all bool, err error) {
	actor, err := admin.Owner()
	if err != nil {
		return "", false, err
	}
	if !s.valid || s.actor != actor {
		return "", false, Errorf(EFORBIDDEN, "no admin scope for this caller")
	}
	return s.tenant, s.all, nil
}

// AllTenants reports whether s is a platform admin's scope.
func (s AdminScope) AllTenants() bool { return s.valid && s.all }

// String describes s for the audit trail: `tenant "t-one"` or "all tenants".
func (s AdminScope) String() string {
	switch {
	case !s.valid:
		return "no admin scope"
	case s.all:
		return "all tenants"
	}
	return "tenant " + strconv.Quote(s.tenant)
}
