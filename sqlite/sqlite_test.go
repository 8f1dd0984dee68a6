package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/sqlstore"
	"github.com/idflow/idflow/storetest"
)

var (
	alice = authtest.User("alice", "t-one")
	bob   = authtest.User("bob", "t-one")
)

func openAt(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openTest(t *testing.T) *DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "idflow.db"))
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) idflow.Store { return openTest(t) })
}

func TestBrowserSessionConformance(t *testing.T) {
	storetest.RunBrowserSessions(t, func(t *testing.T) idflow.Store { return openTest(t) })
}

func TestRunConformance(t *testing.T) {
	storetest.RunRuns(t, func(t *testing.T) storetest.Queue[*sql.Tx] { return openTest(t) })
}

func TestRunAdmissionConformance(t *testing.T) {
	storetest.RunAdmission(t, func(t *testing.T) storetest.Queue[*sql.Tx] { return openTest(t) })
}

func TestOAuthConformance(t *testing.T) {
	storetest.RunOAuth(t, func(t *testing.T) idflow.Store { return openTest(t) })
}

func TestConnectionConformance(t *testing.T) {
	storetest.RunConnections(t, func(t *testing.T) idflow.ConnectionStore { return openTest(t) })
}

func TestOpenRefusesNonFilePaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?_pragma=foreign_keys(OFF)"} {
		if db, err := Open(t.Context(), p, nil); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "idflow.db")
	db := openAt(t, path)
	app, err := db.CreateApp(ctx, alice, idflow.App{Name: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateFact(ctx, alice, idflow.Fact{Content: "the boat is moored at pier nine"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	for range 2 { // the migrations are applied once, whatever the number of opens
		db = openAt(t, path)
		got, err := db.GetApp(ctx, alice, app.ID)
		if err != nil || got.Name != "kept" {
			t.Fatalf("app after reopen: %+v, %v", got, err)
		}
		if res, err := db.SearchFacts(ctx, alice, "boats", 10); err != nil || len(res) != 1 {
			t.Fatalf("search after reopen: %+v, %v", res, err)
		}
		files, _ := filepath.Glob("migrations/*.sql")
		var n, distinct int
		err = db.r.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&n, &distinct)
		if err != nil || n != len(files) || distinct != n {
			t.Fatalf("schema_migrations has %d rows (%d versions), want %d: %v", n, distinct, len(files), err)
		}
		db.Close()
	}
}

// TestConcurrentWriters writes from many goroutines through two handles on
// the same file, as two processes would, while reading: no SQLITE_BUSY.
func TestConcurrentWriters(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "idflow.db")
	handles := []*DB{openAt(t, path), openAt(t, path)}
	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each*2)
	for g := range goroutines {
		db := handles[g%len(handles)]
		p := authtest.User(fmt.Sprint("user", g%4), "t")
		wg.Go(func() {
			for i := range each {
				if _, err := db.CreateFact(ctx, p, idflow.Fact{Content: fmt.Sprintf("fact %d from %d", i, g)}); err != nil {
					errs <- err
				}
				if _, err := db.ListFacts(ctx, p, idflow.Page{Limit: 5}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent write: %v", err)
	}
	st, err := handles[0].Stats(ctx)
	if err != nil || st.Facts != goroutines*each {
		t.Fatalf("Stats = %+v, %v; want %d facts", st, err, goroutines*each)
	}
}

// TestQueryPlans checks that every list and the search start from an index
// led by user_id.
func TestQueryPlans(t *testing.T) {
	db := openTest(t)
	for _, c := range []struct {
		query, index string
		args         int
	}{
		{sqlstore.ListSQL(sqlstore.ListAppsSQL, 1, sqlstore.ByCreated, false, true), "apps_user_created", 4},
		{sqlstore.ListSQL(sqlstore.ListAgentsSQL, 1, sqlstore.ByCreated, false, true), "agents_user_created", 4},
		{sqlstore.ListSQL(sqlstore.ListSessionsSQL, 1, sqlstore.ByCreated, false, true), "sessions_user_created", 4},
		{sqlstore.ListSQL(sqlstore.ListSessionsByAppSQL, 2, sqlstore.ByCreated, false, true), "sessions_user_app", 5},
		{sqlstore.ListSQL(sqlstore.ListMessagesSQL, 2, sqlstore.ByCreated, true, true), "messages_user_session_created", 5},
		{sqlstore.ListSQL(sqlstore.ListWorkflowsSQL, 1, sqlstore.ByCreated, false, true), "workflows_user_created", 4},
		{sqlstore.ListSQL(sqlstore.ListDocumentsSQL, 1, sqlstore.ByCreated, false, true), "documents_user_created", 4},
		{sqlstore.ListSQL(sqlstore.ListFactsSQL, 1, sqlstore.ByCreated, false, true), "facts_user_created", 4},
		{sqlstore.ListSQL(sqlstore.ListAuditSQL, 1, sqlstore.BySeq, false, true), "audit_events_user_seq", 4},
		{sqlstore.ListSQL(sqlstore.ListFactsSQL, 1, sqlstore.ByCreated, false, false), "facts_user_created", 2},
	} {
		plan := explain(t, db, c.query, c.args)
		if !strings.Contains(plan, "INDEX "+c.index+" (user_id=?") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s\nplan: %s\nwant a search of %s on user_id, without a sort", c.query, plan, c.index)
		}
	}
	plan := explain(t, db, searchSQL, 4)
	if !strings.Contains(plan, "SCAN facts_fts VIRTUAL TABLE INDEX") || !strings.Contains(plan, "SEARCH f USING INTEGER PRIMARY KEY") {
		t.Errorf("search plan: %s", plan)
	}
}

func explain(t *testing.T, db *DB, query string, nargs int) string {
	t.Helper()
	args := make([]any, nargs)
	for i := range args {
		args[i] = "x"
	}
	rows, err := db.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	return strings.Join(lines, "; ")
}

// TestSearchLayers checks each of the search's owner checks on its own.
func TestSearchLayers(t *testing.T) {
	ctx := t.Context()
	db := openTest(t)
	mustFact := func(p idflow.Principal, content string) {
		if _, err := db.CreateFact(ctx, p, idflow.Fact{Content: content}); err != nil {
			t.Fatal(err)
		}
	}
	mustFact(alice, "alice keeps the secret recipe in the red notebook")
	mustFact(bob, "bob keeps a secret too")
	// bob tries to plant a token in alice's namespace.
	mustFact(bob, "x"+ftsNamespace(alice.UserID)+"recipe "+ftsNamespace(alice.UserID)+"recipe")

	count := func(match, userID string) int {
		var n int
		err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM facts_fts WHERE facts_fts MATCH ? AND (? = '' OR user_id = ?)`,
			match, userID, userID).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	aliceQuery, _ := ftsQuery(alice.UserID, "secret recipe")
	if n := count(aliceQuery, ""); n != 1 { // the namespace alone
		t.Errorf("alice's terms match %d rows, want only her own 1", n)
	}
	if n := count(aliceQuery, bob.UserID); n != 0 { // the stored user_id alone
		t.Errorf("alice's terms filtered to bob match %d rows, want 0", n)
	}
	res, err := db.SearchFacts(ctx, alice, "recipe", 10)
	if err != nil || len(res) != 1 || res[0].Fact.UserID != alice.UserID {
		t.Fatalf("alice's search = %+v, %v", res, err)
	}
}

func TestFullTextIndexFollowsDeletes(t *testing.T) {
	ctx := t.Context()
	db := openTest(t)
	ftsRows := func() (n int) {
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM facts_fts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	doc, err := db.CreateDocument(ctx, alice, idflow.Document{Filename: "a"}, []string{"one", "two", "three"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := db.CreateFact(ctx, alice, idflow.Fact{Content: "four"})
	if err != nil {
		t.Fatal(err)
	}
	if n := ftsRows(); n != 4 {
		t.Fatalf("%d indexed rows, want 4", n)
	}
	if err := db.DeleteFact(ctx, alice, f.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteDocument(ctx, alice, doc.ID); err != nil {
		t.Fatal(err)
	}
	if n := ftsRows(); n != 0 {
		t.Fatalf("%d indexed rows after deleting every fact, want 0", n)
	}
	if _, err := db.w.ExecContext(ctx, `UPDATE facts SET content = 'x'`); err != nil {
		t.Fatal(err) // no rows: allowed
	}
	if _, err := db.CreateFact(ctx, alice, idflow.Fact{Content: "five"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.ExecContext(ctx, `UPDATE facts SET content = 'six'`); err == nil {
		t.Fatal("a fact's content was changed behind the full-text index")
	}
}

// TestAuditTamperIsDetected: the events alternate between tenants t-one
// (seq 1, 3, 5) and t-two (seq 2, 4). A removed, reordered or relinked
// event breaks the chain for every admin (its links are checked whole); an
// edited one for the admins whose scope holds it, since a tenant admin's
// check recomputes the hashes of their own tenant's events only.
func TestAuditTamperIsDetected(t *testing.T) {
	ctx := t.Context()
	roles := idflow.AdminRoles{Tenant: "admin", Platform: "platform-admin"}
	admins := []idflow.Principal{authtest.User("root", "t-ops", "platform-admin"),
		authtest.User("admin1", "t-one", "admin"), authtest.User("admin2", "t-two", "admin")}
	stmt := func(q string) func([]idflow.AuditEvent) string { return func([]idflow.AuditEvent) string { return q } }
	for _, c := range []struct {
		name   string
		tamper func([]idflow.AuditEvent) string // the SQL that tampers with the log
		want   [3]string                        // per admin (root, t-one, t-two): the seq named, or "" for intact
	}{
		{"edited", stmt(`UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 3`), [3]string{"seq 3", "seq 3", ""}},
		{"edited in t-two", stmt(`UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 2`), [3]string{"seq 2", "", "seq 2"}},
		{"deleted", stmt(`DELETE FROM audit_events WHERE seq = 3`), [3]string{"seq 3", "seq 3", "seq 3"}},
		{"reordered", stmt(`UPDATE audit_events SET seq = -2 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3;
			UPDATE audit_events SET seq = 3 WHERE seq = -2`), [3]string{"seq 2", "seq 2", "seq 2"}},
		{"first", stmt(`UPDATE audit_events SET prev_hash = '` + strings.Repeat("f", 64) + `' WHERE seq = 1`), [3]string{"seq 1", "seq 1", "seq 1"}},
		// Edited with its own hash recomputed: the next event's link breaks.
		{"rehashed", func(events []idflow.AuditEvent) string {
			e := events[2]
			e.Outcome = idflow.OutcomeSuccess
			return fmt.Sprintf(`UPDATE audit_events SET outcome = '%s', hash = '%s' WHERE seq = 3`, e.Outcome, idflow.AuditHash(e))
		}, [3]string{"seq 4", "seq 4", "seq 4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := openTest(t)
			var events []idflow.AuditEvent
			for i := range 5 {
				user, tenant := "alice", "t-one"
				if i%2 == 1 {
					user, tenant = "carol", "t-two"
				}
				e, err := db.RecordAudit(ctx, idflow.AuditEvent{UserID: user, TenantID: tenant, Action: fmt.Sprint("a", i), Outcome: idflow.OutcomeDenied})
				if err != nil {
					t.Fatal(err)
				}
				events = append(events, e)
			}
			if events[0].Seq != 1 || events[0].PrevHash != idflow.AuditGenesisHash {
				t.Fatalf("first event: %+v", events[0])
			}
			for i, a := range admins {
				sc, err := idflow.NewAdminScope(a, roles)
				if err != nil {
					t.Fatal(err)
				}
				if n, err := db.VerifyAuditChain(ctx, a, sc); n != []int{5, 3, 2}[i] || err != nil {
					t.Fatalf("VerifyAuditChain as %s = %d, %v", a.UserID, n, err)
				}
			}
			if _, err := db.w.ExecContext(ctx, c.tamper(events)); err != nil {
				t.Fatal(err)
			}
			for i, a := range admins {
				sc, _ := idflow.NewAdminScope(a, roles)
				n, err := db.VerifyAuditChain(ctx, a, sc)
				if c.want[i] == "" {
					if err != nil {
						t.Fatalf("VerifyAuditChain as %s after the row was %s = %d, %v; want intact (the row is another tenant's)", a.UserID, c.name, n, err)
					}
					continue
				}
				if err == nil || !strings.Contains(idflow.ErrorMessage(err), c.want[i]+":") {
					t.Fatalf("VerifyAuditChain as %s after the row was %s = %d, %v; want an error naming %s", a.UserID, c.name, n, err, c.want[i])
				}
			}
		})
	}
}

func TestWithTx(t *testing.T) {
	ctx := t.Context()
	db := openTest(t)
	boom := errors.New("boom")
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (user_id, tenant_id, email, name, issuer, first_seen, last_seen)
			VALUES ('u', 't', '', '', '', 1, 1)`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithTx = %v, want fn's error", err)
	}
	if st, _ := db.Stats(ctx); st.Users != 0 {
		t.Fatal("WithTx committed although fn failed")
	}
	if db.SQL() != db.w {
		t.Fatal("SQL() is not the write pool")
	}
}

func TestErrorsHideSQL(t *testing.T) {
	db := openTest(t)
	db.Close()
	_, err := db.GetApp(t.Context(), alice, "app_x")
	if idflow.ErrorCode(err) != idflow.EINTERNAL || idflow.ErrorMessage(err) != "storage error" {
		t.Fatalf("error after Close: code %s, message %q", idflow.ErrorCode(err), idflow.ErrorMessage(err))
	}
	if !errors.Is(err, sql.ErrConnDone) && !strings.Contains(err.Error(), "closed") {
		t.Fatalf("the cause is not kept for logs: %v", err)
	}
}

func TestFTSQuery(t *testing.T) {
	ns := ftsNamespace("alice")
	if strings.ContainsAny(ns, "aeiouy") || len(ns) != 16 || ns == ftsNamespace("bob") {
		t.Fatalf("namespace %q: want 16 characters, no vowels, one per user", ns)
	}
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{`?!" ()*:^-`, ""},
		{"Budget budget", `"` + ns + `budget"`},
		{`"quarterly" OR budget*`, `"` + ns + `quarterly" OR "` + ns + `or" OR "` + ns + `budget"`},
		{"user_id:bob", `"` + ns + `user" OR "` + ns + `id" OR "` + ns + `bob"`},
		{"Déjà vu", `"` + ns + `déjà" OR "` + ns + `vu"`},
	} {
		got, ok := ftsQuery("alice", c.in)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("ftsQuery(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	var many string
	for i := range 100 {
		many += fmt.Sprintf(" w%d", i)
	}
	if got, _ := ftsQuery("alice", many); strings.Count(got, " OR ")+1 != sqlstore.MaxSearchTerms {
		t.Errorf("a 100-word query kept %d terms, want %d", strings.Count(got, " OR ")+1, sqlstore.MaxSearchTerms)
	}
}

// TestCreateDocumentKeepsTheServicesID: the service stores a document's
// bytes under an id it mints, then records the document; the record must
// carry that id, or GET …/content answers 404 to the owner.
func TestCreateDocumentKeepsTheServicesID(t *testing.T) {
	ctx := t.Context()
	db := openTest(t)
	id := idflow.NewID(idflow.PrefixDocument)
	doc, err := db.CreateDocument(ctx, alice, idflow.Document{ID: id, Filename: "a.txt"}, []string{"one"})
	if err != nil {
		t.Fatal(err)
	}
	if doc.ID != id {
		t.Fatalf("CreateDocument returned id %q; want the given %q", doc.ID, id)
	}
	if got, err := db.GetDocument(ctx, alice, id); err != nil || got.ID != id {
		t.Fatalf("GetDocument(%q) = %+v, %v", id, got, err)
	}
	// Anything that is not a document id is replaced by a fresh one.
	other, err := db.CreateDocument(ctx, alice, idflow.Document{ID: "app_notadocument", Filename: "b.txt"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(other.ID, idflow.PrefixDocument) {
		t.Fatalf("CreateDocument kept the id %q", other.ID)
	}
}

// TestReadsHoldingEveryConnectionPrepareNothing holds every connection of
// the read pool in a read transaction at once, and then each runs a query
// never seen before. Preparing it would need another connection of the
// pool; a read must run it unprepared instead of waiting for one, and the
// statement is prepared once the connections are back.
func TestReadsHoldingEveryConnectionPrepareNothing(t *testing.T) {
	db := openTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n := db.r.Stats().MaxOpenConnections
	var begun, wg sync.WaitGroup
	begun.Add(n)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- db.read(ctx, func(tx *sql.Tx) error {
				begun.Done()
				begun.Wait() // every connection is now held by a transaction
				var got int
				row := txn{tx: tx, prep: db.rp}.QueryRow(ctx, fmt.Sprintf("SELECT %d", i))
				if err := row.Scan(&got); err != nil {
					return err
				}
				if got != i {
					return fmt.Errorf("SELECT %d answered %d", i, got)
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("read with every connection held: %v", err)
		}
	}
	db.rp.mu.RLock()
	defer db.rp.mu.RUnlock()
	if len(db.rp.m) != n || len(db.rp.missed) != 0 {
		t.Fatalf("after the reads: %d prepared, %d still missed; want %d prepared", len(db.rp.m), len(db.rp.missed), n)
	}
}

// TestWritesReuseTheirStatements: the writer's statements are prepared
// after the first write that runs them (on its one connection, once the
// transaction has given it back) and bound to every later one.
func TestWritesReuseTheirStatements(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	for i := range 3 {
		if _, err := db.CreateFact(ctx, alice, idflow.Fact{Content: fmt.Sprint("fact ", i)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		db.wp.mu.RLock()
		prepared, missed := len(db.wp.m), len(db.wp.missed)
		db.wp.mu.RUnlock()
		if prepared == 0 || missed != 0 {
			t.Fatalf("after write %d: %d statements prepared, %d missed; want some prepared, none missed", i, prepared, missed)
		}
	}
	if l, err := db.ListFacts(ctx, alice, idflow.Page{Limit: 10}); err != nil || len(l.Items) != 3 {
		t.Fatalf("ListFacts = %d facts, %v; want 3", len(l.Items), err)
	}
}
