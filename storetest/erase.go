package storetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// Scan answers where needle appears in the database: "table.column" of
// every row, of every table, whose value (text, or bytes) contains it.
type Scan func(t *testing.T, needle string) []string

// RunErasure is the conformance suite of erasure: after EraseUser, a scan
// of every table of the database finds nothing of the user — not the id,
// not their email, not their text — another user's rows are all still
// there, and the audit chain verifies, with the mark where the id was.
func RunErasure(t *testing.T, open func(t *testing.T) (idflow.Store, Scan)) {
	s, scan := open(t)
	ctx := t.Context()
	zed := authtest.User("zed-erase-41f7c2", "t-one")
	const zedText = "ZED-PRIVATE-9e1b"
	mark := idflow.ErasedPrefix + strings.Repeat("ab", 32)

	// Everything a user can own, for zed and for bob.
	fill := func(p idflow.Principal, text string) {
		t.Helper()
		ok(t, s.TouchUser(ctx, p))
		app := must(s.CreateApp(ctx, p, idflow.App{Name: "app " + text, Description: text}))(t)
		agent := must(s.CreateAgent(ctx, p, idflow.Agent{Name: "agent " + text, Instructions: text, Model: "m", Tools: []string{}}))(t)
		ses := must(s.CreateSession(ctx, p, idflow.ChatSession{Title: "chat " + text, AppID: app.ID, AgentID: agent.ID}))(t)
		must(s.AddMessages(ctx, p, ses.ID, idflow.Message{Role: "user", Content: "hello " + text},
			idflow.Message{Role: "assistant", Content: "hi " + text}))(t)
		wf := must(s.CreateWorkflow(ctx, p, idflow.Workflow{Name: "wf " + text, Definition: idflow.Definition{Steps: []idflow.Step{
			{ID: "ask", Type: "prompt", Prompt: "say " + text}}}}))(t)
		must(s.PublishWorkflow(ctx, p, wf.ID))(t)
		doc := must(s.CreateDocument(ctx, p, idflow.Document{Filename: "doc.txt", ContentType: "text/plain", Size: 4},
			[]string{"the first chunk " + text, "the second chunk " + text}))(t)
		if b, isBlobs := s.(idflow.BlobStore); isBlobs {
			ok(t, b.PutBlob(ctx, p, doc.ID, []byte("bytes "+text)))
		}
		must(s.CreateFact(ctx, p, idflow.Fact{Content: "a fact " + text}))(t)
		ok(t, s.RecordUsage(ctx, p, "m", idflow.Usage{PromptTokens: 3, CompletionTokens: 4}, time.Now()))
		exp := time.Now().Add(time.Hour)
		must(s.PutCredential(ctx, p, idflow.SealedCredential{Provider: "github", KeyID: "k1", Ciphertext: []byte("sealed " + text),
			Status: idflow.ConnectionActive, Scopes: []string{"repo"}, ExpiresAt: &exp}))(t)
		ok(t, s.SaveConnectState(ctx, p, idflow.ConnectState{State: "state-" + p.UserID, Provider: "github", CodeVerifier: text, ExpiresAt: exp}))
		ok(t, s.CreateBrowserSession(ctx, idflow.BrowserSession{IDHash: tokenHash("session-" + p.UserID), UserID: p.UserID, CSRF: text,
			KeyID: "k1", Sealed: []byte(text), CreatedAt: time.Now(), UpdatedAt: time.Now(), ExpiresAt: exp}))
		must(s.CreatePersonalToken(ctx, p, idflow.PersonalToken{Name: "pat " + text, Scopes: []string{idflow.ScopeRead}, ExpiresAt: exp},
			tokenHash("pat-"+p.UserID)))(t)
		must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: p.UserID, TenantID: p.TenantID, Action: "app.create",
			Resource: "app/" + app.ID, Outcome: idflow.OutcomeSuccess, RequestID: "req-" + p.UserID, Detail: "made by " + p.UserID}))(t)
	}
	fill(zed, zedText)
	fill(bob, "BOB-OWN-TEXT")
	// Other people's events that name zed: an admin's read of zed's facts,
	// a denial whose path names zed, both before and after zed's own.
	must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: admin.UserID, TenantID: "t-one", Action: "admin.facts.read",
		Resource: "user/" + zed.UserID, Outcome: idflow.OutcomeSuccess, Detail: `tenant "t-one"`}))(t)
	must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: bob.UserID, TenantID: "t-one", Action: "authorize",
		Resource: "GET /api/v1/users/" + zed.UserID + "/facts", Outcome: idflow.OutcomeDenied, Detail: "not " + zed.UserID + "'s"}))(t)
	must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: carol.UserID, TenantID: "t-two", Action: "app.create", Outcome: idflow.OutcomeSuccess}))(t)

	for _, needle := range []string{zed.UserID, zedText, zed.Email} {
		if len(scan(t, needle)) == 0 {
			t.Fatalf("before erasure the scan finds no %q: the scan sees nothing", needle)
		}
	}
	bobBefore := scan(t, "BOB-OWN-TEXT")
	bobAudit := must(s.ListAudit(ctx, bob, idflow.Page{Limit: 200}))(t)

	// Who may: the admin of zed's tenant, never another tenant's.
	_, err := s.AdminGetUser(ctx, admin2, scopeOf(t, admin2), zed.UserID)
	wantNotFound(t, err, "user")
	_, err = s.AdminGetUser(ctx, admin, scopeOf(t, admin), "nobody-seen")
	wantNotFound(t, err, "user")
	u := must(s.AdminGetUser(ctx, admin, scopeOf(t, admin), zed.UserID))(t)
	if u.UserID != zed.UserID {
		t.Fatalf("AdminGetUser %+v", u)
	}
	_, err = s.EraseUser(ctx, svc, mark)
	wantCode(t, err, idflow.EFORBIDDEN)
	_, err = s.EraseUser(ctx, zed, "erased:not-a-mark")
	wantCode(t, err, idflow.EINVALID)

	erased := must(s.EraseUser(ctx, zed, mark))(t)
	if len(erased.Sessions) != 1 || erased.AuditEvents < 3 {
		t.Errorf("erased %+v; want zed's one session and the re-chained events", erased)
	}
	for _, needle := range []string{zed.UserID, zedText, zed.Email} {
		if where := scan(t, needle); len(where) != 0 {
			t.Errorf("after erasure %q is still in %v", needle, where)
		}
	}
	if where := scan(t, mark); len(where) == 0 {
		t.Error("the mark stands nowhere in the audit chain")
	}
	if after := scan(t, "BOB-OWN-TEXT"); !slices.Equal(after, bobBefore) {
		t.Errorf("bob's rows changed: before %v, after %v", bobBefore, after)
	}
	bobAfter := must(s.ListAudit(ctx, bob, idflow.Page{Limit: 200}))(t)
	if len(bobAfter.Items) != len(bobAudit.Items) {
		t.Errorf("bob had %d events, has %d", len(bobAudit.Items), len(bobAfter.Items))
	}
	if n := must(s.VerifyAuditChain(ctx, root, scopeOf(t, root)))(t); n != 5 {
		t.Errorf("the chain verifies %d events; want all 5", n)
	}
	if _, err := s.LookupPersonalToken(ctx, tokenHash("pat-"+zed.UserID)); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Errorf("zed's token still looks up: %v", err)
	}
	must(s.LookupPersonalToken(ctx, tokenHash("pat-"+bob.UserID)))(t)
	// The chain goes on after it.
	must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: admin.UserID, TenantID: "t-one", Action: "admin.user.erase",
		Resource: "user/" + mark, Outcome: idflow.OutcomeSuccess}))(t)
	must(s.VerifyAuditChain(ctx, root, scopeOf(t, root)))(t)
	// Erasing again finds nothing and changes nothing.
	again := must(s.EraseUser(ctx, zed, mark))(t)
	if len(again.Sessions) != 0 || again.AuditEvents != 0 {
		t.Errorf("a second erasure: %+v", again)
	}
}
