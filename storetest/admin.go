package storetest

import (
	"slices"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// testAdminScope: only the configured roles make a scope, the tenant comes
// from the Principal, and the platform role wins.
func testAdminScope(t *testing.T) {
	for _, p := range []idflow.Principal{alice, erin, svc} {
		_, err := idflow.NewAdminScope(p, adminRoles)
		wantCode(t, err, idflow.EFORBIDDEN)
	}
	// An unset platform role makes nobody a platform admin, not even a
	// Principal holding the empty role.
	if sc := scopeOf(t, admin); sc.AllTenants() || sc.String() != `tenant "t-one"` {
		t.Fatalf("admin's scope = %s, all=%v; want tenant t-one", sc, sc.AllTenants())
	}
	if sc := scopeOf(t, admin0); sc.AllTenants() || sc.String() != `tenant ""` {
		t.Fatalf("admin0's scope = %s; want the empty tenant", sc)
	}
	if sc := scopeOf(t, root); !sc.AllTenants() || sc.String() != "all tenants" {
		t.Fatalf("root's scope = %s; want all tenants", sc)
	}
	if _, err := idflow.NewAdminScope(root, idflow.AdminRoles{Tenant: "admin"}); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("root without a configured platform role: %v; want %s", err, idflow.EFORBIDDEN)
	}
	both, err := idflow.NewAdminScope(admin, idflow.AdminRoles{Tenant: "admin", Platform: "admin"})
	if err != nil || !both.AllTenants() {
		t.Fatalf("a Principal holding both roles: %s, %v; want all tenants", both, err)
	}
	var zero idflow.AdminScope
	if _, _, err := zero.For(admin); idflow.ErrorCode(err) != idflow.EFORBIDDEN || zero.AllTenants() {
		t.Fatalf("the zero scope: %v; want %s", err, idflow.EFORBIDDEN)
	}
}

// testAdminAcrossTenants: every admin store method reads the admin's own
// tenant only; the platform admin reads every tenant.
func testAdminAcrossTenants(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	for _, p := range []idflow.Principal{alice, bob, carol, erin, admin, admin2, admin0, root} {
		ok(t, s.TouchUser(ctx, p))
	}
	// dave has facts but was never seen: no admin of any tenant finds him.
	dave := authtest.User("dave", "t-one")
	aliceFact := must(s.CreateFact(ctx, alice, idflow.Fact{Content: "alice's secret"}))(t)
	carolFact := must(s.CreateFact(ctx, carol, idflow.Fact{Content: "carol's secret"}))(t)
	erinFact := must(s.CreateFact(ctx, erin, idflow.Fact{Content: "erin's secret"}))(t)
	must(s.CreateFact(ctx, dave, idflow.Fact{Content: "dave's secret"}))(t)

	t.Run("users", func(t *testing.T) {
		for _, c := range []struct {
			admin idflow.Principal
			want  []string
		}{
			{admin, []string{"admin", "alice", "bob"}},
			{admin2, []string{"admin2", "carol"}},
			{admin0, []string{"admin0", "erin"}},
			{root, []string{"admin", "admin0", "admin2", "alice", "bob", "carol", "erin", "root"}},
		} {
			// One user per page: the cursor must stay inside the tenant too.
			var got []string
			for page := (idflow.Page{Limit: 1}); ; {
				l := must(s.AdminListUsers(ctx, c.admin, scopeOf(t, c.admin), page))(t)
				for _, u := range l.Items {
					got = append(got, u.UserID)
					if !scopeOf(t, c.admin).AllTenants() && u.TenantID != c.admin.TenantID {
						t.Fatalf("%s listed %+v of another tenant", c.admin.UserID, u)
					}
				}
				if l.NextCursor == "" {
					break
				}
				page.Cursor = l.NextCursor
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("AdminListUsers as %s = %v; want %v", c.admin.UserID, got, c.want)
			}
		}
	})

	t.Run("facts", func(t *testing.T) {
		reads := []struct {
			admin idflow.Principal
			user  string
			want  *idflow.Fact // nil: not found
		}{
			{admin, alice.UserID, &aliceFact},
			{admin, carol.UserID, nil},
			{admin, erin.UserID, nil},
			{admin2, carol.UserID, &carolFact},
			{admin2, alice.UserID, nil},
			{admin0, erin.UserID, &erinFact},
			{admin0, alice.UserID, nil},
			{root, alice.UserID, &aliceFact},
			{root, carol.UserID, &carolFact},
			{root, erin.UserID, &erinFact},
		}
		for _, admin := range []idflow.Principal{admin, admin2, admin0, root} {
			reads = append(reads,
				struct {
					admin idflow.Principal
					user  string
					want  *idflow.Fact
				}{admin, dave.UserID, nil},
				struct {
					admin idflow.Principal
					user  string
					want  *idflow.Fact
				}{admin, "never-seen", nil})
		}
		for _, r := range reads {
			got, err := s.AdminListFacts(ctx, r.admin, scopeOf(t, r.admin), r.user, idflow.Page{})
			if r.want == nil {
				// Another tenant's user answers exactly like a missing one.
				wantNotFound(t, err, "user")
				if len(got.Items) != 0 {
					t.Fatalf("%s reading %s's facts got %+v with the error", r.admin.UserID, r.user, got.Items)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s reading %s's facts: %v", r.admin.UserID, r.user, err)
			}
			sameJSON(t, got.Items, []idflow.Fact{*r.want})
		}
		// A tenant's user with no facts is an empty list, not a not found.
		if got := must(s.AdminListFacts(ctx, admin, scopeOf(t, admin), bob.UserID, idflow.Page{}))(t); got.Items == nil || len(got.Items) != 0 {
			t.Fatalf("AdminListFacts(bob) = %#v; want an empty list", got)
		}
		// A user seen in another tenant since moves out of reach.
		moved := authtest.User(alice.UserID, "t-two")
		ok(t, s.TouchUser(ctx, moved))
		_, err := s.AdminListFacts(ctx, admin, scopeOf(t, admin), alice.UserID, idflow.Page{})
		wantNotFound(t, err, "user")
		sameJSON(t, must(s.AdminListFacts(ctx, admin2, scopeOf(t, admin2), alice.UserID, idflow.Page{}))(t).Items, []idflow.Fact{aliceFact})
		ok(t, s.TouchUser(ctx, alice))
	})

	// Events of every tenant, of the empty tenant, and of nobody.
	record := func(p idflow.Principal, action string) idflow.AuditEvent {
		return must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: p.UserID, TenantID: p.TenantID, Action: action,
			Resource: "app/" + p.UserID, Outcome: idflow.OutcomeSuccess, Detail: p.UserID + " detail"}))(t)
	}
	events := []idflow.AuditEvent{
		record(alice, "a.1"), record(carol, "c.1"), record(erin, "e.1"),
		must(s.RecordAudit(ctx, idflow.AuditEvent{Action: "authenticate", Resource: "GET /api/v1/me",
			Outcome: idflow.OutcomeDenied, Peer: "192.0.2.7:1", Detail: "spoofed identity header"}))(t),
		record(bob, "b.1"), record(carol, "c.2"), record(root, "r.1"),
	}
	tenantOf := func(e idflow.AuditEvent) string { return e.TenantID }

	t.Run("audit", func(t *testing.T) {
		for _, a := range []idflow.Principal{admin, admin2, admin0, root} {
			sc := scopeOf(t, a)
			var want []string
			for _, e := range slices.Backward(events) {
				if sc.AllTenants() || tenantOf(e) == a.TenantID {
					want = append(want, e.ID)
				}
			}
			var got []string
			for page := (idflow.Page{Limit: 1}); ; {
				l := must(s.AdminListAudit(ctx, a, sc, page))(t)
				for _, e := range l.Items {
					got = append(got, e.ID)
					if !sc.AllTenants() && e.TenantID != a.TenantID {
						t.Fatalf("%s read %+v outside its tenant", a.UserID, e)
					}
				}
				if l.NextCursor == "" {
					break
				}
				page.Cursor = l.NextCursor
			}
			if !slices.Equal(got, want) {
				t.Fatalf("AdminListAudit as %s = %v; want %v", a.UserID, got, want)
			}
		}
	})

	t.Run("verify", func(t *testing.T) {
		for _, c := range []struct {
			admin idflow.Principal
			want  int
		}{{admin, 2}, {admin2, 2}, {admin0, 2}, {root, len(events)}} {
			n, err := s.VerifyAuditChain(ctx, c.admin, scopeOf(t, c.admin))
			if err != nil || n != c.want {
				t.Fatalf("VerifyAuditChain as %s = %d, %v; want %d events of its scope, nil", c.admin.UserID, n, err, c.want)
			}
		}
	})
}

// testAdminFailsClosed: every admin store method refuses the zero scope, a
// scope built for another admin, and an app-only Principal.
func testAdminFailsClosed(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	ok(t, s.TouchUser(ctx, alice))
	must(s.CreateFact(ctx, alice, idflow.Fact{Content: "alice's secret"}))(t)
	must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: alice.UserID, TenantID: alice.TenantID, Action: "x", Outcome: idflow.OutcomeSuccess}))(t)
	calls := map[string]func(p idflow.Principal, sc idflow.AdminScope) error{
		"AdminListUsers": func(p idflow.Principal, sc idflow.AdminScope) error {
			_, err := s.AdminListUsers(ctx, p, sc, idflow.Page{})
			return err
		},
		"AdminListFacts": func(p idflow.Principal, sc idflow.AdminScope) error {
			_, err := s.AdminListFacts(ctx, p, sc, alice.UserID, idflow.Page{})
			return err
		},
		"AdminListAudit": func(p idflow.Principal, sc idflow.AdminScope) error {
			_, err := s.AdminListAudit(ctx, p, sc, idflow.Page{})
			return err
		},
		"VerifyAuditChain": func(p idflow.Principal, sc idflow.AdminScope) error {
			_, err := s.VerifyAuditChain(ctx, p, sc)
			return err
		},
	}
	for name, call := range calls {
		for _, c := range []struct {
			why string
			p   idflow.Principal
			sc  idflow.AdminScope
		}{
			{"the zero scope", admin, idflow.AdminScope{}},
			{"the zero scope, as the platform admin", root, idflow.AdminScope{}},
			{"the platform admin's scope, as a tenant admin", admin, scopeOf(t, root)},
			{"a tenant admin's scope, as a user", alice, scopeOf(t, admin)},
			{"another tenant's admin's scope", admin2, scopeOf(t, admin)},
			{"an app-only Principal", svc, scopeOf(t, root)},
		} {
			if err := call(c.p, c.sc); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
				t.Errorf("%s with %s: %v; want %s", name, c.why, err, idflow.EFORBIDDEN)
			}
		}
		// The right scope works, so the refusals above are the scope's.
		if err := call(admin, scopeOf(t, admin)); err != nil {
			t.Errorf("%s with admin's own scope: %v", name, err)
		}
	}
}
