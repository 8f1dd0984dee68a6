package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// testDirectory: what a directory provisions is its tenant's only; a
// user's lifecycle state is per (tenant, user); scopes fail closed.
func testDirectory(t *testing.T, s idflow.Store) {
	ctx := context.Background()
	clients := []string{"scim"}
	one, two := authtest.TenantApp("scim", "t-one"), authtest.TenantApp("scim", "t-two")
	scopeOne := must(idflow.NewDirectoryScope(one, clients))(t)
	scopeTwo := must(idflow.NewDirectoryScope(two, clients))(t)
	if _, err := idflow.NewDirectoryScope(alice, clients); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("a user's directory scope: %v", err)
	}
	if _, err := idflow.NewDirectoryScope(authtest.TenantApp("other", "t-one"), clients); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("an unlisted client's directory scope: %v", err)
	}

	u := must(s.CreateDirectoryUser(ctx, one, scopeOne, idflow.DirectoryUser{UserName: "Alice@one", ExternalID: "alice", Active: true,
		Attributes: []byte(`{"title":"x"}`)}))(t)
	if u.UserID != "alice" || u.TenantID != "t-one" || u.Version != 1 || !idflow.IsNewID(idflow.PrefixDirectoryUser, u.ID) {
		t.Fatalf("created %+v", u)
	}
	if _, err := s.CreateDirectoryUser(ctx, one, scopeOne, idflow.DirectoryUser{UserName: "alice@ONE", ExternalID: "alice2"}); idflow.ErrorCode(err) != idflow.ECONFLICT {
		t.Fatalf("a second alice@one: %v", err)
	}
	// The same external id in t-two is another user.
	u2 := must(s.CreateDirectoryUser(ctx, two, scopeTwo, idflow.DirectoryUser{UserName: "alice@two", ExternalID: "alice", Active: true}))(t)

	// Scopes fail closed: the zero scope, another caller's, another tenant's rows.
	for _, c := range []struct {
		p     idflow.Principal
		scope idflow.DirectoryScope
	}{{one, idflow.DirectoryScope{}}, {two, scopeOne}, {alice, scopeOne}} {
		if _, err := s.GetDirectoryUser(ctx, c.p, c.scope, u.ID); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
			t.Fatalf("get with a scope not the caller's: %v", err)
		}
	}
	if _, err := s.GetDirectoryUser(ctx, two, scopeTwo, u.ID); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("t-two reads t-one's user: %v", err)
	}
	if _, err := s.DeleteDirectoryUser(ctx, two, scopeTwo, u.ID); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("t-two deletes t-one's user: %v", err)
	}
	l := must(s.ListDirectoryUsers(ctx, two, scopeTwo, idflow.DirectoryFilter{}, idflow.DirectoryPage{StartIndex: 1, Count: 50}))(t)
	if l.Total != 1 || l.Items[0].ID != u2.ID {
		t.Fatalf("t-two's users: %+v", l)
	}
	name := "ALICE@ONE"
	l = must(s.ListDirectoryUsers(ctx, one, scopeOne, idflow.DirectoryFilter{UserName: &name}, idflow.DirectoryPage{StartIndex: 1, Count: 50}))(t)
	if l.Total != 1 || l.Items[0].ID != u.ID {
		t.Fatalf("userName filter (case-insensitive): %+v", l)
	}

	// Groups and the groups a user's Principal gets.
	g := must(s.CreateDirectoryGroup(ctx, one, scopeOne, idflow.DirectoryGroup{DisplayName: "Research", ExternalID: "g-oid",
		Members: []idflow.GroupMember{{Value: u.ID}}}))(t)
	if _, err := s.CreateDirectoryGroup(ctx, two, scopeTwo, idflow.DirectoryGroup{DisplayName: "Steal", Members: []idflow.GroupMember{{Value: u.ID}}}); idflow.ErrorCode(err) != idflow.EINVALID {
		t.Fatalf("t-two adds t-one's user to a group: %v", err)
	}
	if got := must(s.DirectoryGroupsOf(ctx, alice))(t); !slices.Equal(got, []string{"g-oid", "Research"}) {
		t.Fatalf("alice of t-one's directory groups: %v", got)
	}
	if got := must(s.DirectoryGroupsOf(ctx, authtest.User("alice", "t-two")))(t); len(got) != 0 {
		t.Fatalf("alice of t-two's directory groups: %v", got)
	}
	if _, err := s.DirectoryGroupsOf(ctx, svc); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("an app's directory groups: %v", err)
	}
	must(s.ChangeGroupMembers(ctx, one, scopeOne, g.ID, nil, []string{u.ID}))(t)
	if got := must(s.DirectoryGroupsOf(ctx, alice))(t); len(got) != 0 {
		t.Fatalf("after removal: %v", got)
	}

	// Disabling: per (tenant, user), versioned.
	u.Active = false
	u = must(s.ReplaceDirectoryUser(ctx, one, scopeOne, u))(t)
	stale := u
	stale.Version = 1
	if _, err := s.ReplaceDirectoryUser(ctx, one, scopeOne, stale); !errors.Is(err, idflow.ErrStale) {
		t.Fatalf("a stale replace: %v", err)
	}
	disabled := must(s.DisabledUsers(ctx))(t)
	if !slices.Contains(disabled, idflow.UserRef{TenantID: "t-one", UserID: "alice"}) || slices.Contains(disabled, idflow.UserRef{TenantID: "t-two", UserID: "alice"}) {
		t.Fatalf("disabled users: %v", disabled)
	}
	// Admins: their own tenant's users only; a platform admin's any.
	if _, err := s.AdminSetUserDisabled(ctx, admin2, scopeOf(t, admin2), "bob", true); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("admin of t-two disables bob of t-one (never seen): %v", err)
	}
	st := must(s.AdminSetUserDisabled(ctx, admin, scopeOf(t, admin), "alice", false))(t)
	if st.TenantID != "t-one" || st.Disabled {
		t.Fatalf("admin of t-one re-enables alice: %+v", st)
	}
	if _, err := s.AdminSetUserDisabled(ctx, admin2, scopeOf(t, admin), "alice", true); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("another admin's scope: %v", err)
	}
	must(s.AdminSetUserDisabled(ctx, root, scopeOf(t, root), "alice", true))(t)
	if got := must(s.DisabledUsers(ctx))(t); len(got) != 2 {
		t.Fatalf("the platform admin disables alice in both tenants that know her: %v", got)
	}
	// Deleting keeps the user disabled.
	must(s.DeleteDirectoryUser(ctx, two, scopeTwo, u2.ID))(t)
	if got := must(s.DisabledUsers(ctx))(t); !slices.Contains(got, idflow.UserRef{TenantID: "t-two", UserID: "alice"}) {
		t.Fatalf("a deleted user is no longer disabled: %v", got)
	}
}
