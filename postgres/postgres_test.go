package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/sqlstore"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/storetest"
)

var (
	alice  = authtest.User("alice", "t-one")
	bob    = authtest.User("bob", "t-one")
	carol  = authtest.User("carol", "t-two")
	admin  = authtest.User("admin", "t-one", "admin")
	admin2 = authtest.User("admin2", "t-two", "admin")
	root   = authtest.User("root", "t-ops", "platform-admin")
)

// scopeOf is p's admin scope under the roles "admin" and "platform-admin".
func scopeOf(t testing.TB, p idflow.Principal) idflow.AdminScope {
	t.Helper()
	sc, err := idflow.NewAdminScope(p, idflow.AdminRoles{Tenant: "admin", Platform: "platform-admin"})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// fixture is one migrated database with its roles, and a store opened on it
// as the app role.
type fixture struct {
	pg       *testsvc.Postgres
	name     string // the database
	ownerURL string // the schema owner
	appURL   string // the app role
	owner    string
	app      string
	s        *DB
}

// server is one PostgreSQL server with a migrated template database: each
// fixture is a copy of it (CREATE DATABASE … TEMPLATE), with the same owner
// and app roles, which is much faster than migrating every time.
type server struct {
	pg   *testsvc.Postgres
	tmpl *testsvc.Database
	n    atomic.Int64
}

func newServer(t testing.TB) *server {
	t.Helper()
	pg := testsvc.StartPostgres(t)
	tmpl := pg.NewDatabase(t)
	if err := Migrate(context.Background(), tmpl.OwnerURL, tmpl.App); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return &server{pg: pg, tmpl: tmpl}
}

// fixture copies the template into a new database and opens the store on it.
func (sv *server) fixture(t testing.TB) *fixture {
	t.Helper()
	f := sv.database(t)
	f.s = openStore(t, f.appURL)
	return f
}

// database copies the template into a new database.
func (sv *server) database(t testing.TB) *fixture {
	t.Helper()
	return sv.copyDatabase(t, sv.tmpl.Name)
}

// copyOf copies f's database (no one may be connected to it) into a new one.
func (sv *server) copyOf(t testing.TB, f *fixture) *fixture {
	t.Helper()
	return sv.copyDatabase(t, f.name)
}

func (sv *server) copyDatabase(t testing.TB, from string) *fixture {
	t.Helper()
	name := fmt.Sprintf("%s_%d", sv.tmpl.Name, sv.n.Add(1))
	id := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	sv.pg.Exec(t, "postgres", fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER %s", id(name), id(from), id(sv.tmpl.Owner)))
	sv.pg.Exec(t, "postgres", fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", id(name)))
	sv.pg.Exec(t, "postgres", fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s", id(name), id(sv.tmpl.App)))
	return &fixture{pg: sv.pg, name: name, owner: sv.tmpl.Owner, app: sv.tmpl.App,
		ownerURL: withDatabase(t, sv.tmpl.OwnerURL, name), appURL: withDatabase(t, sv.tmpl.AppURL, name)}
}

func openStore(t testing.TB, url string) *DB {
	t.Helper()
	s, err := Open(context.Background(), url, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// connect opens a single connection to url.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// withDatabase returns url (of the same server) on another database.
func withDatabase(t testing.TB, raw, database string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + database
	return u.String()
}

// TestPostgres runs every PostgreSQL case on one server.
func TestPostgres(t *testing.T) {
	sv := newServer(t)

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) idflow.Store { return sv.fixture(t).s })
	})
	t.Run("RunConformance", func(t *testing.T) {
		storetest.RunRuns(t, func(t *testing.T) storetest.Queue[pgx.Tx] { return sv.fixture(t).s })
	})
	t.Run("RunAdmissionConformance", func(t *testing.T) {
		storetest.RunAdmission(t, func(t *testing.T) storetest.Queue[pgx.Tx] { return sv.fixture(t).s })
	})
	t.Run("ConnectionConformance", func(t *testing.T) {
		storetest.RunConnections(t, func(t *testing.T) idflow.ConnectionStore { return sv.fixture(t).s })
	})
	t.Run("BrowserSessionConformance", func(t *testing.T) {
		storetest.RunBrowserSessions(t, func(t *testing.T) idflow.Store { return sv.fixture(t).s })
	})
	t.Run("OAuthConformance", func(t *testing.T) {
		storetest.RunOAuth(t, func(t *testing.T) idflow.Store { return sv.fixture(t).s })
	})
	t.Run("OpenRefusesUnsafeRoles", func(t *testing.T) { testOpenRefuses(t, sv) })
	t.Run("Migrate", func(t *testing.T) { testMigrate(t, sv) })
	t.Run("SecondWall", func(t *testing.T) { testSecondWall(t, sv) })
	t.Run("NoUserSet", func(t *testing.T) { testNoUserSet(t, sv) })
	t.Run("TransactionLocal", func(t *testing.T) { testTransactionLocal(t, sv) })
	t.Run("AuditAcrossReplicas", func(t *testing.T) { testAuditReplicas(t, sv) })
	t.Run("AuditTamper", func(t *testing.T) { testAuditTamper(t, sv) })
	t.Run("AdminPath", func(t *testing.T) { testAdminPath(t, sv) })
	t.Run("AdminTenantWall", func(t *testing.T) { testAdminTenantWall(t, sv) })
	t.Run("Blobs", func(t *testing.T) { testBlobs(t, sv) })
	t.Run("SearchSemantics", func(t *testing.T) { testSearchSemantics(t, sv) })
	t.Run("QueryPlans", func(t *testing.T) { testQueryPlans(t, sv) })
	t.Run("River", func(t *testing.T) { testRiver(t, sv) })
	t.Run("Connections", func(t *testing.T) { testConnections(t, sv) })
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// createRole creates a login role on the server (as the superuser) that may
// connect to database, and returns its URL.
func createRole(t *testing.T, f *fixture, name, attrs string) string {
	t.Helper()
	id := pgx.Identifier{name}.Sanitize()
	f.pg.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'pw-%s' %s", id, name, attrs))
	f.pg.Exec(t, "postgres", fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s", pgx.Identifier{f.name}.Sanitize(), id))
	return f.pg.URL(name, "pw-"+name, f.name)
}

func testOpenRefuses(t *testing.T, sv *server) {
	f := sv.database(t)
	suffix := f.name[len(f.name)-4:]
	bypass := "bypass_" + suffix
	cases := []struct {
		name, url, want string
	}{
		{"superuser", withDatabase(t, f.pg.SuperuserURL(), f.name), "is a superuser"},
		{"bypassrls", createRole(t, f, bypass, "NOSUPERUSER BYPASSRLS"), "has BYPASSRLS"},
		{"table owner", f.ownerURL, "owns table"},
		{"member of the owner", createRole(t, f, "member_"+suffix, "IN ROLE "+pgx.Identifier{f.owner}.Sanitize()), "owns table"},
		{"member of a bypassrls role", createRole(t, f, "inherits_"+suffix, "IN ROLE "+pgx.Identifier{bypass}.Sanitize()),
			"member of a superuser or BYPASSRLS role"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := Open(t.Context(), c.url, nil)
			if err == nil {
				db.Close()
				t.Fatalf("Open as %s succeeded; want a refusal", c.name)
			}
			if !errors.Is(err, ErrUnsafeRole) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open as %s: %v; want ErrUnsafeRole saying %q", c.name, err, c.want)
			}
			if strings.Contains(err.Error(), "pw-") || strings.Contains(err.Error(), "SELECT") {
				t.Fatalf("the refusal shows a password or SQL: %v", err)
			}
		})
	}

	t.Run("app role opens", func(t *testing.T) {
		s := openStore(t, f.appURL)
		if err := s.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a table without forced RLS", func(t *testing.T) {
		g := sv.database(t)
		owner := connect(t, g.ownerURL)
		if _, err := owner.Exec(t.Context(), `ALTER TABLE messages NO FORCE ROW LEVEL SECURITY`); err != nil {
			t.Fatal(err)
		}
		db, err := Open(t.Context(), g.appURL, nil)
		if err == nil {
			db.Close()
			t.Fatal("Open succeeded on a table whose RLS is not forced")
		}
		if !errors.Is(err, ErrUnsafeRole) || !strings.Contains(err.Error(), "messages") {
			t.Fatalf("Open: %v; want a refusal naming messages", err)
		}
	})

	t.Run("not migrated", func(t *testing.T) {
		d := sv.pg.NewDatabase(t)
		db, err := Open(t.Context(), d.AppURL, nil)
		if err == nil {
			db.Close()
			t.Fatal("Open succeeded on an empty database")
		}
		if errors.Is(err, ErrUnsafeRole) || !strings.Contains(err.Error(), "idflow migrate") {
			t.Fatalf("Open on an empty database: %v; want advice to migrate", err)
		}
	})
}

func testMigrate(t *testing.T, sv *server) {
	ctx := t.Context()
	d := sv.pg.NewDatabase(t)
	if err := Migrate(ctx, d.OwnerURL, "no_such_role"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Migrate with a missing app role: %v", err)
	}
	if err := Migrate(ctx, d.OwnerURL, ""); err == nil {
		t.Fatal("Migrate without an app role succeeded")
	}
	// Two replicas starting at once: both succeed, each migration applies once.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(ctx, d.OwnerURL, d.App) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if err := Migrate(ctx, d.OwnerURL, d.App); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	files, err := migrations.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	owner := connect(t, d.OwnerURL)
	var n, distinct int
	if err := owner.QueryRow(ctx, `SELECT count(*), count(DISTINCT version) FROM idflow_schema_migrations`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != len(files) || distinct != n {
		t.Fatalf("idflow_schema_migrations has %d rows (%d versions), want %d", n, distinct, len(files))
	}
	// Every user table: RLS enabled and forced, owned by the owner, and the
	// app role holds no privilege it does not need.
	for _, table := range UserTables() {
		var rls, force bool
		var tableOwner string
		if err := owner.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner)
			FROM pg_class WHERE oid = to_regclass($1)`, table).Scan(&rls, &force, &tableOwner); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if !rls || !force || tableOwner != d.Owner {
			t.Fatalf("%s: rls=%v force=%v owner=%s; want RLS enabled and forced, owned by %s", table, rls, force, tableOwner, d.Owner)
		}
		for _, priv := range []string{"TRUNCATE", "REFERENCES", "TRIGGER"} {
			var has bool
			if err := owner.QueryRow(ctx, `SELECT has_table_privilege($1, $2, $3)`, d.App, table, priv).Scan(&has); err != nil {
				t.Fatal(err)
			}
			if has {
				t.Fatalf("the app role holds %s on %s", priv, table)
			}
		}
	}
	// run_events may be deleted since erasure (0026): a user's whole runs go.
	for _, tp := range [][2]string{{"audit_events", "UPDATE"}, {"audit_events", "DELETE"}, {"facts", "UPDATE"}, {"run_events", "UPDATE"}} {
		table, priv := tp[0], tp[1]
		var has bool
		if err := owner.QueryRow(ctx, `SELECT has_table_privilege($1, $2, $3)`, d.App, table, priv).Scan(&has); err != nil || has {
			t.Fatalf("app role %s on %s: %v, %v; want no privilege", priv, table, has, err)
		}
	}
}

// wallData creates, as p, one row or more in every user table.
func wallData(t *testing.T, s *DB, p idflow.Principal) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.TouchUser(ctx, p))
	app, err := s.CreateApp(ctx, p, idflow.App{Name: p.UserID + " app"})
	must(err)
	agent, err := s.CreateAgent(ctx, p, idflow.Agent{Name: p.UserID + " agent", Tools: []string{"x"}})
	must(err)
	ses, err := s.CreateSession(ctx, p, idflow.ChatSession{Title: p.UserID + " chat", AppID: app.ID, AgentID: agent.ID})
	must(err)
	_, err = s.AddMessages(ctx, p, ses.ID, idflow.Message{Role: "user", Content: p.UserID + " secret"})
	must(err)
	wf, err := s.CreateWorkflow(ctx, p, idflow.Workflow{Name: "wf", Definition: idflow.Definition{
		Steps: []idflow.Step{{ID: "a", Type: idflow.StepWait, Ms: 1}}}})
	must(err)
	_, err = s.PublishWorkflow(ctx, p, wf.ID)
	must(err)
	docID := idflow.NewID(idflow.PrefixDocument)
	must(s.PutBlob(ctx, p, docID, []byte(p.UserID+" bytes")))
	doc, err := s.CreateDocument(ctx, p, idflow.Document{ID: docID, Filename: "d.txt", AppID: app.ID}, []string{p.UserID + " chunk"})
	must(err)
	_, err = s.CreateFact(ctx, p, idflow.Fact{Content: p.UserID + " fact", SourceDocumentID: doc.ID})
	must(err)
	run, err := s.CreateRun(ctx, p, idflow.Run{WorkflowID: wf.ID, Definition: wf.Definition})
	must(err)
	_, err = s.AppendEvent(ctx, p, idflow.Event{RunID: run.ID, Type: idflow.EventRunStarted})
	must(err)
	_, err = s.RecordAudit(ctx, idflow.AuditEvent{UserID: p.UserID, TenantID: p.TenantID, Action: "login", Outcome: idflow.OutcomeSuccess})
	must(err)
	_, err = s.PutCredential(ctx, p, idflow.SealedCredential{Provider: "github", KeyID: "k1", Ciphertext: []byte(p.UserID + " sealed")})
	must(err)
	must(s.SaveConnectState(ctx, p, idflow.ConnectState{State: "st", Provider: "github", ExpiresAt: time.Now().Add(time.Hour)}))
	now := time.Now().UTC()
	sum := sha256.Sum256([]byte(p.UserID + " session secret"))
	must(s.CreateBrowserSession(ctx, idflow.BrowserSession{IDHash: hex.EncodeToString(sum[:]), UserID: p.UserID, CSRF: "c",
		KeyID: "k1", Sealed: []byte(p.UserID + " tokens"), CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	must(s.RecordUsage(ctx, p, "gpt-test", idflow.Usage{PromptTokens: 3, CompletionTokens: 4}, now))
	tokenSum := sha256.Sum256([]byte(p.UserID + " token secret"))
	_, err = s.CreatePersonalToken(ctx, p, idflow.PersonalToken{Name: "t", Scopes: []string{idflow.ScopeRead}, ExpiresAt: now.Add(time.Hour)},
		hex.EncodeToString(tokenSum[:]))
	must(err)
}

// childFirst orders the user tables so that deleting in this order never
// trips a foreign key.
var childFirst = []string{"run_events", "runs", "facts", "document_blobs", "documents", "messages", "sessions",
	"workflow_versions", "workflows", "agents", "apps", "users", "audit_events", "connections", "connect_states", "browser_sessions", "model_usage", "personal_tokens"}

// plantSQL inserts, into each user table, a row owned by alice.
var plantSQL = map[string]string{
	"users":             `INSERT INTO users VALUES ('alice', 't', 'e', 'n', 'i', now(), now())`,
	"apps":              `INSERT INTO apps VALUES ('alice', 'app_planted', 'n', 'd', now(), now())`,
	"agents":            `INSERT INTO agents VALUES ('alice', 'agt_planted', 'n', 'i', 'm', '[]', now(), now())`,
	"sessions":          `INSERT INTO sessions (user_id, id, title, created_at, updated_at) VALUES ('alice', 'ses_planted', 't', now(), now())`,
	"messages":          `INSERT INTO messages VALUES ('alice', 'msg_planted', 'ses_planted', 'user', 'planted', now(), now())`,
	"workflows":         `INSERT INTO workflows VALUES ('alice', 'wf_planted', 'n', '{"steps":[]}', 'draft', 0, NULL, now(), now())`,
	"workflow_versions": `INSERT INTO workflow_versions VALUES ('alice', 'wf_planted', 9, '{"steps":[]}', now())`,
	"documents":         `INSERT INTO documents VALUES ('alice', 'doc_planted', NULL, 'f', 'text/plain', 1, 'x', 0, now(), now())`,
	"document_blobs":    `INSERT INTO document_blobs VALUES ('alice', 'doc_planted', '\x00', now())`,
	"facts":             `INSERT INTO facts (user_id, id, content, created_at, updated_at) VALUES ('alice', 'fct_planted', 'planted', now(), now())`,
	"runs": `INSERT INTO runs (user_id, id, tenant_id, workflow_id, workflow_version, definition, status, input, error, attempt,
		next_seq, created_at, updated_at) VALUES ('alice', 'run_planted', 't', 'wf_planted', 0, '{}', 'queued', 'null', '', 0, 1, now(), now())`,
	"run_events":  `INSERT INTO run_events (user_id, run_id, seq, type, step_id, at) VALUES ('alice', 'run_planted', 99, 't', '', now())`,
	"connections": `INSERT INTO connections VALUES ('alice', 'evil', 'k', '\\x00', 'active', '[]', NULL, now(), now())`,
	"connect_states": `INSERT INTO connect_states VALUES ('alice', 'planted', 'github', 'v', 'https://evil.example/cb',
		now() + interval '1 hour', now())`,
	"browser_sessions": `INSERT INTO browser_sessions VALUES (repeat('a', 64), 'alice', 'c', 'k', '\x00', now(), now(), now() + interval '1 hour')`,
	"model_usage":      `INSERT INTO model_usage VALUES ('alice', current_date, 'm', 't', 1, 1, 1, now())`,
	"personal_tokens": `INSERT INTO personal_tokens VALUES ('alice', 'pat_planted', 'n', '["read"]', now(), now(), now() + interval '1 hour',
		NULL, repeat('b', 64), '{"user_id":"alice"}')`,
}

// countAs answers how many rows of each user table are visible in tx as
// user (switching the transaction's identity).
func countAs(t *testing.T, tx pgx.Tx, user string) map[string]int {
	t.Helper()
	ctx := t.Context()
	if _, err := tx.Exec(ctx, `SELECT set_config('idflow.user_id', $1, true)`, user); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, table := range UserTables() {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		out[table] = n
	}
	return out
}

// testSecondWall: through the app's own pool (and, where the app role lacks
// a privilege, through the owner's connection, which FORCE subjects to the
// same policies), bob's transaction runs deliberately unscoped statements
// against every user table, and none of them reads, changes or plants a row
// of alice's.
func testSecondWall(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	wallData(t, f.s, alice)
	wallData(t, f.s, bob)
	if _, err := f.s.RecordAudit(ctx, idflow.AuditEvent{Action: "auth.denied", Outcome: idflow.OutcomeDenied}); err != nil {
		t.Fatal(err)
	}

	type conn interface {
		Begin(ctx context.Context) (pgx.Tx, error)
	}
	for _, via := range []struct {
		name  string
		db    conn
		isApp bool
	}{{"app pool", f.s.Pool(), true}, {"owner connection", connect(t, f.ownerURL), false}} {
		t.Run(via.name, func(t *testing.T) {
			tx, err := via.db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			aliceBefore := countAs(t, tx, alice.UserID)
			bobs := countAs(t, tx, bob.UserID)
			// For the app role, even the stats switch opens nothing: its
			// policy applies to the owner (as which idflow_stats() runs) only.
			if via.isApp {
				if _, err := tx.Exec(ctx, `SELECT set_config('idflow.stats', 'on', true)`); err != nil {
					t.Fatal(err)
				}
			}
			for _, table := range UserTables() {
				if aliceBefore[table] == 0 || bobs[table] == 0 {
					t.Fatalf("%s: alice sees %d rows, bob %d; the test needs both", table, aliceBefore[table], bobs[table])
				}
				rows, err := tx.Query(ctx, `SELECT * FROM `+table)
				if err != nil {
					t.Fatalf("SELECT * FROM %s: %v", table, err)
				}
				n := 0
				for rows.Next() {
					n++
					vals, err := rows.Values()
					if err != nil {
						t.Fatal(err)
					}
					for i, fd := range rows.FieldDescriptions() {
						if fd.Name == "user_id" && vals[i] != bob.UserID {
							t.Fatalf("bob's unscoped SELECT * FROM %s answered a row of %q", table, vals[i])
						}
					}
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				if n != bobs[table] {
					t.Fatalf("SELECT * FROM %s answered %d rows, bob's are %d", table, n, bobs[table])
				}
			}

			// UPDATE and DELETE without a predicate, each behind a savepoint.
			for _, stmt := range []string{"UPDATE %s SET user_id = user_id", "DELETE FROM %s"} {
				for _, table := range childFirst {
					sp, err := tx.Begin(ctx)
					if err != nil {
						t.Fatal(err)
					}
					tag, err := sp.Exec(ctx, fmt.Sprintf(stmt, table))
					switch {
					case err != nil && pgCode(err) == "42501": // the app role lacks the privilege
						_ = sp.Rollback(ctx)
					case err != nil:
						t.Fatalf("%s: %v", fmt.Sprintf(stmt, table), err)
					default:
						if int(tag.RowsAffected()) > bobs[table] {
							t.Fatalf("%q changed %d rows; bob has %d", fmt.Sprintf(stmt, table), tag.RowsAffected(), bobs[table])
						}
						if err := sp.Commit(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			// Plant a row owned by alice: WITH CHECK refuses it (audit_events
			// takes appends from any session by design, and is left out).
			for table, stmt := range plantSQL {
				sp, err := tx.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				_, err = sp.Exec(ctx, stmt)
				_ = sp.Rollback(ctx)
				if pgCode(err) != "42501" || !strings.Contains(err.Error(), "row-level security") {
					t.Fatalf("bob planted a row of alice's in %s: %v; want a row-level security refusal", table, err)
				}
			}
			if len(plantSQL) != len(UserTables())-1 {
				t.Fatalf("plantSQL covers %d tables, want every user table but audit_events", len(plantSQL))
			}
			if after := countAs(t, tx, alice.UserID); !maps.Equal(after, aliceBefore) {
				t.Fatalf("alice's rows after bob's statements: %v, before: %v", after, aliceBefore)
			}
		})
	}
	// Nothing was committed; alice's data reads back through the store.
	if got, err := f.s.ListMessages(ctx, alice, mustSession(t, f.s, alice), idflow.Page{}); err != nil || len(got.Items) != 1 {
		t.Fatalf("alice's messages: %+v, %v", got, err)
	}
}

func mustSession(t *testing.T, s *DB, p idflow.Principal) string {
	t.Helper()
	l, err := s.ListSessions(t.Context(), p, idflow.SessionFilter{}, idflow.Page{})
	if err != nil || len(l.Items) == 0 {
		t.Fatalf("sessions of %s: %+v, %v", p.UserID, l, err)
	}
	return l.Items[0].ID
}

// testNoUserSet: a session that never set idflow.user_id (NULL), and a
// pooled one whose earlier transaction did (it then reads back as the
// empty string), see no row of any user table, not even the audit events of
// nobody (user_id ”).
func testNoUserSet(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	wallData(t, f.s, alice)
	if _, err := f.s.RecordAudit(ctx, idflow.AuditEvent{Action: "auth.denied", Outcome: idflow.OutcomeDenied}); err != nil {
		t.Fatal(err)
	}
	fresh := connect(t, f.appURL)
	pooled, err := f.s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pooled.Release()
	if _, err := pooled.Exec(ctx, `BEGIN; SELECT set_config('idflow.user_id', 'alice', true); COMMIT`); err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}{"fresh": fresh, "pooled": pooled} {
		var setting *string
		if err := q.QueryRow(ctx, `SELECT current_setting('idflow.user_id', true)`).Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if setting != nil && *setting != "" {
			t.Fatalf("%s connection: idflow.user_id = %q outside a transaction", name, *setting)
		}
		for _, table := range UserTables() {
			var n int
			if err := q.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			if n != 0 {
				t.Fatalf("%s connection without idflow.user_id sees %d rows of %s", name, n, table)
			}
		}
	}
}

// testTransactionLocal: the store's settings end with its transactions, so
// the next transaction on the same pooled connection (as under PgBouncer's
// transaction pooling) starts with no identity.
func testTransactionLocal(t *testing.T, sv *server) {
	f := sv.database(t)
	ctx := t.Context()
	s := openStore(t, f.appURL+"&pool_max_conns=1")
	if _, err := s.CreateApp(ctx, alice, idflow.App{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AdminListUsers(ctx, admin, scopeOf(t, admin), idflow.Page{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyAuditChain(ctx, admin, scopeOf(t, admin)); err != nil {
		t.Fatal(err)
	}
	var user, adm, tenant, links string
	if err := s.Pool().QueryRow(ctx, `SELECT COALESCE(current_setting('idflow.user_id', true), ''),
		COALESCE(current_setting('idflow.admin', true), ''), COALESCE(current_setting('idflow.admin_tenant', true), ''),
		COALESCE(current_setting('idflow.audit_links', true), '')`).Scan(&user, &adm, &tenant, &links); err != nil {
		t.Fatal(err)
	}
	if user != "" || adm != "" || tenant != "" || links != "" {
		t.Fatalf("after the store's transactions the connection keeps idflow.user_id=%q idflow.admin=%q idflow.admin_tenant=%q idflow.audit_links=%q",
			user, adm, tenant, links)
	}
	if st := s.Pool().Stat(); st.MaxConns() != 1 {
		t.Fatalf("pool has %d connections; the test needs exactly one", st.MaxConns())
	}
}

// testAuditReplicas: two stores on one database, as two replicas, append to
// the chain from 8 goroutines; the chain stays one valid chain.
func testAuditReplicas(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	replicas := []*DB{f.s, openStore(t, f.appURL)}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		s := replicas[w%2]
		wg.Go(func() {
			for i := range each {
				if _, err := s.RecordAudit(ctx, idflow.AuditEvent{UserID: carol.UserID, Action: fmt.Sprintf("w%d.%d", w, i),
					Outcome: idflow.OutcomeSuccess}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("RecordAudit: %v", err)
	}
	for _, s := range replicas {
		if n, err := s.VerifyAuditChain(ctx, root, scopeOf(t, root)); err != nil || n != workers*each {
			t.Fatalf("VerifyAuditChain = %d, %v; want %d, nil", n, err, workers*each)
		}
	}
}

// testAuditTamper: an edited event, and a removed newest event, are found.
// Only a superuser can do either (the app role may not change audit_events,
// and FORCE holds even the owner to policies that allow no UPDATE/DELETE).
// The events are alice's (t-one): the platform admin and t-one's admin find
// every change; t-two's admin, whose check recomputes no t-one hash, finds
// the removals (the links and the chain head are checked whole) but not the
// edit of another tenant's event.
func testAuditTamper(t *testing.T, sv *server) {
	ctx := t.Context()
	for _, c := range []struct {
		name, sql, want string
		twoSees         bool
	}{
		{"edited", `UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 2`, "seq 2: hash does not match", false},
		{"tail cut", `DELETE FROM audit_events WHERE seq = 3`, "chain head names seq 3", true},
		{"middle removed", `DELETE FROM audit_events WHERE seq = 2`, "seq 2: event missing", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := sv.fixture(t)
			for i := range 3 {
				if _, err := f.s.RecordAudit(ctx, idflow.AuditEvent{UserID: alice.UserID, TenantID: alice.TenantID, Action: fmt.Sprint("a", i)}); err != nil {
					t.Fatal(err)
				}
			}
			owner := connect(t, f.ownerURL)
			if tag, err := owner.Exec(ctx, c.sql); err != nil || tag.RowsAffected() != 0 {
				t.Fatalf("the owner changed audit_events: %v, %v", tag, err)
			}
			for who, want := range map[*idflow.Principal]int{&root: 3, &admin: 3, &admin2: 0} {
				if n, err := f.s.VerifyAuditChain(ctx, *who, scopeOf(t, *who)); err != nil || n != want {
					t.Fatalf("VerifyAuditChain as %s before tampering = %d, %v; want %d", who.UserID, n, err, want)
				}
			}
			f.pg.Exec(t, f.name, c.sql)
			for _, who := range []idflow.Principal{root, admin, admin2} {
				_, err := f.s.VerifyAuditChain(ctx, who, scopeOf(t, who))
				if who.UserID == admin2.UserID && !c.twoSees {
					if err != nil {
						t.Fatalf("VerifyAuditChain as %s after %s: %v; want intact (another tenant's event)", who.UserID, c.name, err)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("VerifyAuditChain as %s after %s: %v; want %q", who.UserID, c.name, err, c.want)
				}
			}
		})
	}
}

func testBlobs(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	var _ idflow.BlobStore = f.s
	id := idflow.NewID(idflow.PrefixDocument)
	if err := f.s.PutBlob(ctx, alice, id, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := f.s.PutBlob(ctx, alice, id, []byte("second\x00bytes")); err != nil {
		t.Fatal(err)
	}
	if b, err := f.s.GetBlob(ctx, alice, id); err != nil || string(b) != "second\x00bytes" {
		t.Fatalf("GetBlob = %q, %v", b, err)
	}
	_, errBob := f.s.GetBlob(ctx, bob, id)
	_, errMissing := f.s.GetBlob(ctx, alice, idflow.NewID(idflow.PrefixDocument))
	if idflow.ErrorCode(errBob) != idflow.ENOTFOUND || errBob.Error() != errMissing.Error() {
		t.Fatalf("bob's GetBlob of alice's id: %v; a missing one: %v; want the same not found", errBob, errMissing)
	}
	// bob writing "the same id" writes his own blob, never alice's.
	if err := f.s.PutBlob(ctx, bob, id, []byte("bob")); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteBlob(ctx, bob, id); err != nil {
		t.Fatal(err)
	}
	if b, err := f.s.GetBlob(ctx, alice, id); err != nil || string(b) != "second\x00bytes" {
		t.Fatalf("alice's blob after bob's put and delete: %q, %v", b, err)
	}
	for _, bad := range []string{"", "../etc/passwd", "doc_", "app_" + id[4:], id + "'"} {
		if err := f.s.PutBlob(ctx, alice, bad, []byte("x")); idflow.ErrorCode(err) != idflow.EINVALID {
			t.Fatalf("PutBlob(%q): %v; want %s", bad, err, idflow.EINVALID)
		}
	}
	if err := f.s.PutBlob(ctx, authtest.App("svc"), id, []byte("x")); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("PutBlob as an app: %v", err)
	}
	if err := f.s.DeleteBlob(ctx, alice, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.GetBlob(ctx, alice, id); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("GetBlob after delete: %v", err)
	}
	if err := f.s.DeleteBlob(ctx, alice, id); err != nil {
		t.Fatalf("deleting a missing blob: %v", err)
	}
	// The document keeps the id the service minted for its bytes.
	d, err := f.s.CreateDocument(ctx, alice, idflow.Document{ID: id, Filename: "x.txt"}, nil)
	if err != nil || d.ID != id {
		t.Fatalf("CreateDocument with a minted id = %+v, %v; want id %s", d, err, id)
	}
	d2, err := f.s.CreateDocument(ctx, alice, idflow.Document{ID: "doc_chosen", Filename: "y.txt"}, nil)
	if err != nil || d2.ID == "doc_chosen" {
		t.Fatalf("CreateDocument with a malformed id = %+v, %v; want a new id", d2, err)
	}
}

// testSearchSemantics: words are split, folded, unaccented and stemmed the
// same way on both sides, as SQLite's tokenizer does.
func testSearchSemantics(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	facts := map[string]string{
		"cafe":  "Meeting at the CAFÉ near the station",
		"email": "Send the report to alice@example.com by noon",
		"hyph":  "The budget-review happens quarterly",
		"under": "rename user_id to owner",
		"utf":   "Die Größe des Büros ist unbekannt",
	}
	ids := map[string]string{}
	for k, c := range facts {
		fact, err := f.s.CreateFact(ctx, alice, idflow.Fact{Content: c})
		if err != nil {
			t.Fatal(err)
		}
		ids[k] = fact.ID
	}
	for q, want := range map[string]string{
		"cafe": "cafe", "Café": "cafe", "meetings": "cafe", "example": "email", "com": "email", "reviews": "hyph",
		"budget": "hyph", "id": "under", "größe": "utf", "GROSSE": "", "buro": "utf", "the": "",
	} {
		got, err := f.s.SearchFacts(ctx, alice, q, 10)
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		switch {
		case q == "the":
			if len(got) != 3 {
				t.Fatalf("search %q found %d facts, want 3 (no stop words)", q, len(got))
			}
		case want == "":
			// "GROSSE": ß does not fold to ss, as in SQLite; no claim either way.
		case len(got) != 1 || got[0].Fact.ID != ids[want] || got[0].Score <= 0:
			t.Fatalf("search %q = %+v, want only %q with a positive score", q, got, want)
		}
	}
	long := strings.Repeat("x", 5000)
	if got, err := f.s.SearchFacts(ctx, alice, long+" cafe", 10); err != nil || len(got) != 1 {
		t.Fatalf("search with a very long word: %+v, %v", got, err)
	}
	if _, err := f.s.CreateFact(ctx, alice, idflow.Fact{Content: "nul \x00 byte"}); idflow.ErrorCode(err) != idflow.EINVALID {
		t.Fatalf("a NUL byte in a fact: %v; want %s", err, idflow.EINVALID)
	}
}

// testQueryPlans: every list and the search read through an index led by
// user_id, and no list sorts (with sequential scans, bitmap scans and sorts
// off, so that the small test tables still show which index a query can
// use).
func testQueryPlans(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	now := time.Now()
	for _, c := range []struct {
		query, index string
		args         []any
	}{
		{sqlstore.ListSQL(sqlstore.ListAppsSQL, 1, sqlstore.ByCreated, false, true), "apps_user_created", []any{"u", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListAgentsSQL, 1, sqlstore.ByCreated, false, true), "agents_user_created", []any{"u", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListSessionsSQL, 1, sqlstore.ByCreated, false, true), "sessions_user_created", []any{"u", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListSessionsByAppSQL, 2, sqlstore.ByCreated, false, true), "sessions_user_app", []any{"u", "app", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListMessagesSQL, 2, sqlstore.ByCreated, true, true), "messages_user_session_created", []any{"u", "ses", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListWorkflowsSQL, 1, sqlstore.ByCreated, false, true), "workflows_user_created", []any{"u", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListDocumentsSQL, 1, sqlstore.ByCreated, false, true), "documents_user_created", []any{"u", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListFactsSQL, 1, sqlstore.ByCreated, false, true), "facts_user_created", []any{"u", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListRunsSQL, 1, sqlstore.ByCreated, false, true), "runs_user_created", []any{"u", now, "x", 10}},
		{dialect.RunsAdmitted, "runs_user_admitted", []any{"u"}},
		{dialect.RunsWaiting, "runs_user_waiting", []any{"u", 2}},
		{sqlstore.ListSQL(sqlstore.ListAuditSQL, 1, sqlstore.BySeq, false, true), "audit_events_user_seq", []any{"u", int64(5), "x", 10}},
		{sqlstore.ListSQL(sqlstore.ListFactsSQL, 1, sqlstore.ByCreated, false, false), "facts_user_created", []any{"u", 10}},
		{searchSQL, "facts_", []any{"u", "'budget'", 10}},
		{listUsageSQL, "model_usage_pkey", []any{"u", "2026-01-01", "2026-01-31"}},
	} {
		var plan []string
		err := f.s.asUser(ctx, "u", readOnly, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off`); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `EXPLAIN `+c.query, c.args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					return err
				}
				plan = append(plan, line)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatalf("EXPLAIN %s: %v", c.query, err)
		}
		text := strings.Join(plan, "\n")
		if !strings.Contains(text, " on "+c.index) && !strings.Contains(text, "using "+c.index) {
			if c.index != "facts_" || !regexp.MustCompile(`(?:on|using) facts_\w+`).MatchString(text) {
				t.Fatalf("plan of %s does not use %s:\n%s", c.query, c.index, text)
			}
		}
		if !regexp.MustCompile(`Index Cond: \(+user_id = ('u'::text|\$1)`).MatchString(text) {
			t.Fatalf("plan of %s does not bind user_id in the index:\n%s", c.query, text)
		}
		if c.query != searchSQL && strings.Contains(text, "Sort") {
			t.Fatalf("plan of %s sorts:\n%s", c.query, text)
		}
	}
	// A tenant admin's lists read through an index led by tenant_id.
	for _, c := range []struct {
		query, index string
		args         []any
	}{
		{sqlstore.ListSQL(sqlstore.AdminUsersTenantSQL, 1, sqlstore.ByFirstSeen, false, true), "users_tenant_first_seen", []any{"t", now, "x", 10}},
		{sqlstore.ListSQL(sqlstore.AdminAuditTenantSQL, 1, sqlstore.BySeq, false, true), "audit_events_tenant_seq", []any{"t", int64(5), "x", 10}},
	} {
		var plan []string
		err := f.s.asAdmin(ctx, admin, admin.TenantID, false, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off`); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `EXPLAIN `+c.query, c.args...)
			if err != nil {
				return err
			}
			plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			t.Fatalf("EXPLAIN %s: %v", c.query, err)
		}
		text := strings.Join(plan, "\n")
		if !strings.Contains(text, " using "+c.index) || !regexp.MustCompile(`Index Cond: \(+tenant_id = ('t'::text|\$1)`).MatchString(text) ||
			strings.Contains(text, "Sort") {
			t.Fatalf("plan of %s does not read %s by tenant_id without sorting:\n%s", c.query, c.index, text)
		}
	}
}

// testArgs is the River job of testRiver.
type testArgs struct {
	RunID string `json:"run_id"`
	Owner string `json:"owner"`
}

func (testArgs) Kind() string { return "idflow.postgres_test" }

// testWorker marks the run as running, then succeeded, as its owner; a run
// listed in strand is left running while its job is cancelled (as if its
// worker's replica had died on the last attempt).
type testWorker struct {
	river.WorkerDefaults[testArgs]
	store  *DB
	strand *sync.Map
}

func (w *testWorker) Work(ctx context.Context, job *river.Job[testArgs]) error {
	p := authtest.User(job.Args.Owner, "t-one")
	if _, err := w.store.UpdateRun(ctx, p, job.Args.RunID, idflow.RunUpdate{Status: idflow.RunRunning, Attempt: job.Attempt}); err != nil {
		return err
	}
	if _, ok := w.strand.Load(job.Args.RunID); ok {
		return river.JobCancel(errors.New("stranded on purpose"))
	}
	_, err := w.store.UpdateRun(ctx, p, job.Args.RunID, idflow.RunUpdate{Status: idflow.RunSucceeded, Output: json.RawMessage(`"done"`)})
	return err
}

// errorLog records the messages River logs at error level.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelError }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l.msgs = append(l.msgs, msg)
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

// testRiver: River runs on the app role with the grants of grants.sql: a run
// admitted by CreateRun is enqueued in the same transaction, worked and
// completed; a failed enqueue records nothing; a run whose job ends without
// ending it is failed by FailStrandedRuns, which admits the owner's next run.
func testRiver(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	logs := &errorLog{}
	workers := river.NewWorkers()
	strand := &sync.Map{}
	river.AddWorker(workers, &testWorker{store: f.s, strand: strand})
	client, err := river.NewClient(riverpgxv5.New(f.s.Pool()), &river.Config{
		Queues:              map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}},
		Workers:             workers,
		Logger:              slog.New(logs),
		ReindexerIndexNames: []string{}, // REINDEX needs ownership: left to the owner
		FetchPollInterval:   50 * time.Millisecond,
		FetchCooldown:       10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Bool
	f.s.SetRunAdmission(sqlstore.RunAdmission[pgx.Tx]{PerUser: 1,
		Enqueue: func(ctx context.Context, tx pgx.Tx, runID string, owner idflow.Snapshot) (int64, error) {
			res, err := client.InsertTx(ctx, tx, testArgs{RunID: runID, Owner: owner.UserID}, nil)
			if err != nil {
				return 0, err
			}
			if refuse.Load() {
				return 0, errors.New("enqueue refused")
			}
			return res.Job.ID, nil
		}})
	events, unsubscribe := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	defer unsubscribe()
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitJob := func(runID string, want river.EventKind) {
		t.Helper()
		for {
			select {
			case ev := <-events:
				var args testArgs
				if err := json.Unmarshal(ev.Job.EncodedArgs, &args); err != nil {
					t.Fatal(err)
				}
				if args.RunID != runID {
					continue
				}
				if ev.Kind != want {
					t.Fatalf("job of %s ended with %s (%+v); want %s", runID, ev.Kind, ev.Job.Errors, want)
				}
				return
			case <-ctx.Done():
				t.Fatalf("the job of %s did not end in time", runID)
			}
		}
	}
	wf, err := f.s.CreateWorkflow(ctx, alice, idflow.Workflow{Name: "wf", Definition: idflow.Definition{
		Steps: []idflow.Step{{ID: "a", Type: idflow.StepWait, Ms: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	newRun := idflow.Run{WorkflowID: wf.ID, Definition: wf.Definition}
	run, err := f.s.CreateRun(ctx, alice, newRun)
	if err != nil {
		t.Fatalf("CreateRun with River: %v", err)
	}
	waitJob(run.ID, river.EventKindJobCompleted)
	got, err := f.s.GetRun(ctx, alice, run.ID)
	if err != nil || got.Status != idflow.RunSucceeded || string(got.Output) != `"done"` {
		t.Fatalf("run after its job: %+v, %v", got, err)
	}

	var before int
	if err := f.s.Pool().QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	if _, err = f.s.CreateRun(ctx, alice, newRun); err == nil {
		t.Fatal("CreateRun succeeded although enqueue failed")
	}
	refuse.Store(false)
	runs, err := f.s.ListRuns(ctx, alice, idflow.Page{})
	if err != nil || len(runs.Items) != 1 {
		t.Fatalf("runs after a failed enqueue: %+v, %v; want only the first", runs.Items, err)
	}
	var after int
	if err := f.s.Pool().QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&after); err != nil || after != before {
		t.Fatalf("river_job has %d rows after a failed enqueue, %d before (%v)", after, before, err)
	}

	// A stranded run holds alice's only slot until FailStrandedRuns.
	strandedID := idflow.NewID(idflow.PrefixRun)
	strand.Store(strandedID, true)
	stranded, err := f.s.CreateRun(ctx, alice, idflow.Run{ID: strandedID, WorkflowID: wf.ID, Definition: wf.Definition})
	if err != nil {
		t.Fatal(err)
	}
	next, err := f.s.CreateRun(ctx, alice, newRun)
	if err != nil {
		t.Fatal(err)
	}
	waitJob(stranded.ID, river.EventKindJobCancelled)
	if got, err := f.s.GetRun(ctx, alice, next.ID); err != nil || got.Status != idflow.RunQueued {
		t.Fatalf("alice's next run: %+v, %v; want queued behind the stranded one", got, err)
	}
	evs, err := f.s.FailStrandedRuns(ctx, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("FailStrandedRuns = %+v, %v; want the stranded run's run.failed", evs, err)
	}
	if e := evs[0]; e.RunID != stranded.ID || e.UserID != "alice" || e.Type != idflow.EventRunFailed || e.Seq != 2 {
		t.Fatalf("event %+v; want alice's run.failed of %s, seq 2", e, stranded.ID)
	}
	if got, err := f.s.GetRun(ctx, alice, stranded.ID); err != nil || got.Status != idflow.RunFailed || got.Error != sqlstore.RunStrandedError {
		t.Fatalf("stranded run after the sweep: %+v, %v", got, err)
	}
	if stored, err := f.s.ListEvents(ctx, alice, stranded.ID, 1, 10); err != nil || len(stored) != 1 || stored[0].Type != idflow.EventRunFailed {
		t.Fatalf("stranded run's stored events after seq 1: %+v, %v", stored, err)
	}
	waitJob(next.ID, river.EventKindJobCompleted)
	if evs, err := f.s.FailStrandedRuns(ctx, 10); err != nil || len(evs) != 0 {
		t.Fatalf("second sweep: %+v, %v; want nothing", evs, err)
	}

	stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if err := client.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if len(logs.msgs) > 0 {
		t.Fatalf("River logged errors as the app role: %q", logs.msgs)
	}
}

// testConnections: the ConnectionStore keeps each user's sealed credentials
// and connect flows to that user, as the SQLite store does.
func testConnections(t *testing.T, sv *server) {
	f := sv.fixture(t)
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	c, err := f.s.PutCredential(ctx, alice, idflow.SealedCredential{Provider: "github", KeyID: "k1",
		Ciphertext: []byte("alice-secret"), Scopes: []string{"read"}, ExpiresAt: &exp})
	if err != nil || c.UserID != alice.UserID || c.Status != idflow.ConnectionActive || !c.ExpiresAt.Equal(exp) {
		t.Fatalf("PutCredential = %+v, %v", c, err)
	}
	c2, err := f.s.PutCredential(ctx, alice, idflow.SealedCredential{Provider: "github", KeyID: "k2", Ciphertext: []byte("rotated")})
	if err != nil || !c2.CreatedAt.Equal(c.CreatedAt) || !c2.UpdatedAt.After(c.UpdatedAt) || c2.Scopes == nil || c2.ExpiresAt != nil {
		t.Fatalf("replacing: %+v, %v (first %+v)", c2, err, c)
	}
	for _, p := range []idflow.Principal{bob, admin} {
		if l, err := f.s.ListConnections(ctx, p); err != nil || len(l) != 0 {
			t.Fatalf("%s lists %+v, %v", p.UserID, l, err)
		}
		if _, err := f.s.GetCredential(ctx, p, "github"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
			t.Fatalf("%s reads alice's credential: %v", p.UserID, err)
		}
		if err := f.s.SetConnectionStatus(ctx, p, "github", idflow.ConnectionNeedsConsent); idflow.ErrorCode(err) != idflow.ENOTFOUND {
			t.Fatalf("%s changes alice's status: %v", p.UserID, err)
		}
		if err := f.s.DeleteCredential(ctx, p, "github"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
			t.Fatalf("%s deletes alice's credential: %v", p.UserID, err)
		}
	}
	if got, err := f.s.GetCredential(ctx, alice, "github"); err != nil || got.KeyID != "k2" || string(got.Ciphertext) != "rotated" {
		t.Fatalf("alice's credential: %+v, %v", got, err)
	}
	if _, err := f.s.PutCredential(ctx, authtest.App("svc"), idflow.SealedCredential{Provider: "x", KeyID: "k", Ciphertext: []byte("c")}); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("PutCredential as an app: %v", err)
	}

	st := idflow.ConnectState{State: "s1", Provider: "github", CodeVerifier: "v", RedirectURI: "https://x/cb", ExpiresAt: exp}
	if err := f.s.SaveConnectState(ctx, alice, st); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.TakeConnectState(ctx, bob, "s1"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("bob took alice's connect state: %v", err)
	}
	if got, err := f.s.TakeConnectState(ctx, alice, "s1"); err != nil || got.CodeVerifier != "v" || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("TakeConnectState = %+v, %v", got, err)
	}
	if _, err := f.s.TakeConnectState(ctx, alice, "s1"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("a connect state was taken twice: %v", err)
	}
	old := st
	old.State, old.ExpiresAt = "s-old", time.Now().Add(-time.Second)
	if err := f.s.SaveConnectState(ctx, alice, old); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.TakeConnectState(ctx, alice, "s-old"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("an expired connect state was taken: %v", err)
	}
	for i := range sqlstore.MaxPendingStates + 3 {
		s := st
		s.State = fmt.Sprintf("p%02d", i)
		if err := f.s.SaveConnectState(ctx, alice, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.TakeConnectState(ctx, alice, "p00"); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("the oldest pending flow beyond the bound was kept: %v", err)
	}
	if _, err := f.s.TakeConnectState(ctx, alice, fmt.Sprintf("p%02d", sqlstore.MaxPendingStates+2)); err != nil {
		t.Fatalf("the newest pending flow: %v", err)
	}
}
