package auth

import (
	"context"
	"errors"
	"slices"

	"github.com/idflow/idflow"
)

// ErrUserDisabled is the cause of a refusal of a disabled (deactivated)
// user's credential, whatever it is.
var ErrUserDisabled = errors.New("user disabled")

// Revocations answers whether a user is disabled. It is asked on every
// request, after a token was found in the verified-token cache too, so
// Disabled must be cheap (an in-memory set; package lifecycle keeps it
// current on every replica).
type Revocations interface {
	Disabled(tenantID, userID string) bool
}

// Directory answers the groups a directory pushed for a user over SCIM
// (package lifecycle caches them). nil and an error both mean none: a
// missing group only ever closes a door.
type Directory interface {
	DirectoryGroups(ctx context.Context, p idflow.Principal) []string
}

// admit is the last step of every way a request's Principal is built —
// bearer token (cached or not), browser session, trusted proxy headers,
// WebSocket token, MCP request, and any credential added later: Authenticate,
// AuthenticateToken and VerifyToken all return through it. It refuses a
// disabled user (EFORBIDDEN, ErrUserDisabled), whatever credential they
// hold, and merges the user's directory groups into Groups. App-only
// Principals pass unchanged: they are not users of a directory.
func (a *Authenticator) admit(ctx context.Context, p idflow.Principal) (idflow.Principal, error) {
	if p.Kind != idflow.KindUser {
		return p, nil
	}
	if a.revocations != nil && a.revocations.Disabled(p.TenantID, p.UserID) {
		return idflow.Principal{}, idflow.WrapError(idflow.EFORBIDDEN, "this user is disabled", ErrUserDisabled)
	}
	if a.directory != nil {
		if dir := a.directory.DirectoryGroups(ctx, p); len(dir) > 0 {
			p.TokenGroups = p.Groups
			p.DirectoryGroups = dir
			p.Groups = mergeGroups(p.Groups, dir)
		}
	}
	return p, nil
}

// mergeGroups answers a new slice with token's groups, then dir's that
// token lacks.
func mergeGroups(token, dir []string) []string {
	out := make([]string, 0, len(token)+len(dir))
	out = append(out, token...)
	for _, g := range dir {
		if !slices.Contains(token, g) {
			out = append(out, g)
		}
	}
	return out
}

// Subject is the Principal of a user an administrative action acts on —
// deactivation cancelling their runs and revoking their connections,
// erasure deleting their rows — so that the store's owner rules hold for
// it as for any request. It has no roles, groups or scopes, and is never
// the caller of a request (AuthLifecycle).
func Subject(ref idflow.UserRef) (idflow.Principal, error) {
	if blank(ref.UserID) {
		return idflow.Principal{}, idflow.Errorf(idflow.EINVALID, "a user id is required")
	}
	if err := checkUserID(ref.UserID); err != nil {
		return idflow.Principal{}, userIDError("the user id", err)
	}
	return idflow.Principal{
		UserID: ref.UserID, TenantID: ref.TenantID,
		Roles: []string{}, Groups: []string{}, Scopes: []string{},
		Kind: idflow.KindUser, AuthMethod: idflow.AuthLifecycle,
	}, nil
}
