// Package storetest is the conformance suite every idflow.Store backend must
// pass, isolation cases included.
//
// It is test support: it imports authtest to build Principals, so only
// _test.go files may import it, and it holds nothing production code would
// use.
package storetest

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// The cast: alice and bob share tenant t-one, carol is in t-two, erin
// comes from an IdP without tenants, svc is an application acting for
// itself. admin administers t-one, admin2 t-two, admin0 the users without a
// tenant; root holds the platform admin role and belongs to t-ops, where
// nobody else is.
var (
	alice  = authtest.User("alice", "t-one")
	bob    = authtest.User("bob", "t-one")
	carol  = authtest.User("carol", "t-two")
	erin   = authtest.User("erin", "")
	admin  = authtest.User("admin", "t-one", "admin")
	admin2 = authtest.User("admin2", "t-two", "admin")
	admin0 = authtest.User("admin0", "", "admin")
	root   = authtest.User("root", "t-ops", "platform-admin")
	svc    = authtest.App("svc")
)

// adminRoles are the roles of the cast's admins.
var adminRoles = idflow.AdminRoles{Tenant: "admin", Platform: "platform-admin"}

// scopeOf is p's admin scope.
func scopeOf(t *testing.T, p idflow.Principal) idflow.AdminScope {
	t.Helper()
	return must(idflow.NewAdminScope(p, adminRoles))(t)
}

// Run runs the suite. open must return a new, empty store for each call and
// register its own cleanup (closing it) with t.
func Run(t *testing.T, open func(t *testing.T) idflow.Store) {
	t.Run("Apps", func(t *testing.T) { testApps(t, open(t)) })
	t.Run("Agents", func(t *testing.T) { testAgents(t, open(t)) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, open(t)) })
	t.Run("Messages", func(t *testing.T) { testMessages(t, open(t)) })
	t.Run("Workflows", func(t *testing.T) { testWorkflows(t, open(t)) })
	t.Run("Documents", func(t *testing.T) { testDocuments(t, open(t)) })
	t.Run("Facts", func(t *testing.T) { testFacts(t, open(t)) })
	t.Run("Search", func(t *testing.T) { testSearch(t, open(t)) })
	t.Run("Pagination", func(t *testing.T) { testPagination(t, open) })
	t.Run("Users", func(t *testing.T) { testUsers(t, open(t)) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open(t)) })
	t.Run("AuditCaps", func(t *testing.T) { testAuditCaps(t, open(t)) })
	t.Run("AdminScope", func(t *testing.T) { testAdminScope(t) })
	t.Run("AdminAcrossTenants", func(t *testing.T) { testAdminAcrossTenants(t, open(t)) })
	t.Run("AdminFailsClosed", func(t *testing.T) { testAdminFailsClosed(t, open(t)) })
	t.Run("Stats", func(t *testing.T) { testStats(t, open(t)) })
	t.Run("Usage", func(t *testing.T) { testUsage(t, open(t)) })
	t.Run("UsageIsolation", func(t *testing.T) { testUsageIsolation(t, open(t)) })
	t.Run("AdminUsage", func(t *testing.T) { testAdminUsage(t, open(t)) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, open(t)) })
	t.Run("AppOnly", func(t *testing.T) { testAppOnly(t, open(t)) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, open(t)) })
	t.Run("Directory", func(t *testing.T) { testDirectory(t, open(t)) })
	t.Run("Ping", func(t *testing.T) {
		if err := open(t).Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

// must(v, err)(t) fails the test on err and returns v.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// ok fails the test on err.
func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// wantCode checks that err carries code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := idflow.ErrorCode(err); got != code {
		t.Fatalf("got error %v (code %s), want code %s", err, got, code)
	}
}

// wantNotFound checks that err is exactly idflow.NotFound(kind): the answer
// for a missing object and for another user's object must not differ.
func wantNotFound(t *testing.T, err error, kind string) {
	t.Helper()
	wantCode(t, err, idflow.ENOTFOUND)
	if want := idflow.NotFound(kind); err.Error() != want.Error() || idflow.ErrorMessage(err) != want.Message {
		t.Fatalf("got error %q, want exactly %q", err, want)
	}
}

// sameJSON checks that got and want encode to the same JSON, the form a
// client sees.
func sameJSON(t *testing.T, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("got  %s\nwant %s", g, w)
	}
}

func ptr[T any](v T) *T { return &v }

// wantUTC checks that times a store read back are in UTC, whether it keeps
// them as timestamps or as numbers, optional or not.
func wantUTC(t *testing.T, what string, times ...time.Time) {
	t.Helper()
	for _, tm := range times {
		if tm.Location() != time.UTC {
			t.Fatalf("%s: %v is in %v, want UTC", what, tm, tm.Location())
		}
	}
}

// ids returns the ids of items.
func ids[T any](items []T, id func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, v := range items {
		out = append(out, id(v))
	}
	return out
}

// checkNew checks the fields a store fills on create.
func checkNew(t *testing.T, kind, id, prefix, userID, wantUserID string) {
	t.Helper()
	if len(id) < len(prefix)+16 || id[:len(prefix)] != prefix {
		t.Errorf("%s id %q: want prefix %q and at least 96 random bits", kind, id, prefix)
	}
	if userID != wantUserID {
		t.Errorf("%s user_id = %q, want %q", kind, userID, wantUserID)
	}
}
