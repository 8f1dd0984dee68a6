package postgres

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// testAdminPath: the store's admin methods read the admin's tenant through
// the admin_read policies, and the platform admin every tenant.
func testAdminPath(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	wallData(t, f.s, alice)
	wallData(t, f.s, bob)
	wallData(t, f.s, carol)
	facts, err := f.s.AdminListFacts(ctx, admin, scopeOf(t, admin), alice.UserID, idflow.Page{})
	if err != nil || len(facts.Items) != 2 {
		t.Fatalf("AdminListFacts(alice) = %+v, %v; want alice's 2 facts", facts, err)
	}
	for _, fact := range facts.Items {
		if fact.UserID != alice.UserID {
			t.Fatalf("AdminListFacts(alice) answered %+v", fact)
		}
	}
	if _, err := f.s.AdminListFacts(ctx, admin, scopeOf(t, admin), carol.UserID, idflow.Page{}); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("t-one's admin reading carol's facts: %v; want not found", err)
	}
	if got, err := f.s.AdminListFacts(ctx, root, scopeOf(t, root), carol.UserID, idflow.Page{}); err != nil || len(got.Items) != 2 {
		t.Fatalf("the platform admin reading carol's facts: %+v, %v; want 2", got, err)
	}
	for who, want := range map[string]int{"admin": 2, "admin2": 1, "root": 3} {
		p := map[string]idflow.Principal{"admin": admin, "admin2": admin2, "root": root}[who]
		users, err := f.s.AdminListUsers(ctx, p, scopeOf(t, p), idflow.Page{})
		if err != nil || len(users.Items) != want {
			t.Fatalf("AdminListUsers as %s = %+v, %v; want %d", who, users, err, want)
		}
		audit, err := f.s.AdminListAudit(ctx, p, scopeOf(t, p), idflow.Page{})
		if err != nil || len(audit.Items) != want {
			t.Fatalf("AdminListAudit as %s = %+v, %v; want %d", who, audit, err, want)
		}
		if n, err := f.s.VerifyAuditChain(ctx, p, scopeOf(t, p)); err != nil || n != want {
			t.Fatalf("VerifyAuditChain as %s = %d, %v; want %d", who, n, err, want)
		}
	}
	st, err := f.s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (idflow.Stats{Users: 3, Sessions: 3, Messages: 3, Workflows: 3, Runs: 3, Documents: 3, Facts: 6}); st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
}

// testAdminTenantWall: the admin_read policies hold the tenant by
// themselves. Through the app's own pool, a transaction switched onto the
// admin path runs deliberately unscoped statements (no tenant, no user
// predicate) and sees the switched tenant's rows of users, facts and
// audit_events, nothing of any other tenant, and nothing of any other
// table; the old switch ('on') and a tenant without a mode open nothing;
// writes stay closed; idflow_audit_links() answers links and nothing else.
func testAdminTenantWall(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	wallData(t, f.s, alice)
	wallData(t, f.s, bob)
	wallData(t, f.s, carol)
	// dave (t-one by his token) has a fact but was never seen: no tenant.
	dave := authtest.User("dave", "t-one")
	if _, err := f.s.CreateFact(ctx, dave, idflow.Fact{Content: "dave's fact"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.RecordAudit(ctx, idflow.AuditEvent{Action: "authenticate", Outcome: idflow.OutcomeDenied, Detail: "spoofed identity header"}); err != nil {
		t.Fatal(err)
	}

	// rows answers, per table, the user_id of every visible row.
	rows := func(t *testing.T, tx pgx.Tx, table string) []string {
		t.Helper()
		r, err := tx.Query(ctx, `SELECT user_id FROM `+table)
		if err != nil {
			t.Fatalf("SELECT FROM %s: %v", table, err)
		}
		out, err := pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		name     string
		settings [][2]string // set_config pairs, after idflow.user_id = 'nobody'
		want     map[string][]string
	}{
		{"tenant t-one", [][2]string{{"idflow.admin", "tenant"}, {"idflow.admin_tenant", "t-one"}}, map[string][]string{
			"users": {"alice", "bob"}, "facts": {"alice", "alice", "bob", "bob"}, "audit_events": {"alice", "bob"}, "model_usage": {"alice", "bob"}}},
		{"tenant t-two", [][2]string{{"idflow.admin", "tenant"}, {"idflow.admin_tenant", "t-two"}}, map[string][]string{
			"users": {"carol"}, "facts": {"carol", "carol"}, "audit_events": {"carol"}, "model_usage": {"carol"}}},
		// The empty tenant: its users (none here) and the events of nobody.
		{"tenant empty", [][2]string{{"idflow.admin", "tenant"}, {"idflow.admin_tenant", ""}}, map[string][]string{
			"audit_events": {""}}},
		{"a tenant of nobody", [][2]string{{"idflow.admin", "tenant"}, {"idflow.admin_tenant", "t-nobody"}}, nil},
		{"all tenants", [][2]string{{"idflow.admin", "all"}}, map[string][]string{
			"users": {"alice", "bob", "carol"}, "facts": {"alice", "alice", "bob", "bob", "carol", "carol", "dave"},
			"audit_events": {"", "alice", "bob", "carol"}, "model_usage": {"alice", "bob", "carol"}}},
		{"0001's switch", [][2]string{{"idflow.admin", "on"}, {"idflow.admin_tenant", "t-one"}}, nil},
		{"a tenant without the mode", [][2]string{{"idflow.admin_tenant", "t-one"}}, nil},
		{"the mode in another case", [][2]string{{"idflow.admin", "ALL"}}, nil},
		{"the links switch", [][2]string{{"idflow.audit_links", "on"}, {"idflow.stats", "on"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tx, err := f.s.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(ctx, `SELECT set_config('idflow.user_id', 'nobody', true)`); err != nil {
				t.Fatal(err)
			}
			for _, kv := range c.settings {
				if _, err := tx.Exec(ctx, `SELECT set_config($1, $2, true)`, kv[0], kv[1]); err != nil {
					t.Fatal(err)
				}
			}
			for _, table := range UserTables() {
				got, want := rows(t, tx, table), c.want[table]
				if want == nil {
					want = []string{}
				}
				if got == nil {
					got = []string{}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("unscoped SELECT FROM %s shows rows of %v; want %v", table, got, want)
				}
			}
			// The admin path never writes, whatever it can see.
			for _, stmt := range []string{`DELETE FROM facts`, `UPDATE users SET tenant_id = 't-two'`} {
				sp, err := tx.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				tag, err := sp.Exec(ctx, stmt)
				_ = sp.Rollback(ctx)
				if err == nil && tag.RowsAffected() != 0 {
					t.Fatalf("%q on the admin path changed %d rows", stmt, tag.RowsAffected())
				}
			}
		})
	}

	t.Run("links only", func(t *testing.T) {
		tx, err := f.s.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		r, err := tx.Query(ctx, `SELECT * FROM idflow_audit_links(0, 100)`)
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, fd := range r.FieldDescriptions() {
			cols = append(cols, fd.Name)
		}
		n := 0
		for r.Next() {
			n++
		}
		r.Close()
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cols, []string{"seq", "prev_hash", "hash"}) || n != 4 {
			t.Fatalf("idflow_audit_links answered columns %v and %d rows; want seq, prev_hash, hash of the 4 events", cols, n)
		}
		// The function's switch ended with it: the events stay closed.
		if got := rows(t, tx, "audit_events"); len(got) != 0 {
			t.Fatalf("after idflow_audit_links, audit_events shows rows of %v", got)
		}
		var page int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM idflow_audit_links(1, 2)`).Scan(&page); err != nil || page != 2 {
			t.Fatalf("idflow_audit_links(1, 2) answered %d rows, %v; want 2", page, err)
		}
	})
}
