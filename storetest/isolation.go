package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// resource is one kind of user object, reduced to what the isolation cases
// need.
type resource struct {
	kind, prefix string
	create       func(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error)
	get          func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) (any, error)
	// byID holds every other method that names one object by its id.
	byID map[string]func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error
	list func(ctx context.Context, s idflow.Store, p idflow.Principal, page idflow.Page) ([]string, string, error)
}

func resources() []resource {
	def := idflow.Definition{Steps: []idflow.Step{{ID: "s", Type: idflow.StepPrompt, Prompt: "hello"}}}
	return []resource{
		{kind: "app", prefix: idflow.PrefixApp,
			create: func(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error) {
				v, err := s.CreateApp(ctx, p, idflow.App{Name: p.UserID + "'s app", Description: "zebra"})
				return v.ID, err
			},
			get: func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) (any, error) {
				return s.GetApp(ctx, p, id)
			},
			byID: map[string]func(context.Context, idflow.Store, idflow.Principal, string) error{
				"UpdateApp": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.UpdateApp(ctx, p, id, idflow.AppPatch{Name: ptr("taken")})
					return err
				},
				"DeleteApp": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					return s.DeleteApp(ctx, p, id)
				},
			},
			list: listerNamed("apps").list},
		{kind: "session", prefix: idflow.PrefixSession,
			create: func(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error) {
				v, err := s.CreateSession(ctx, p, idflow.ChatSession{Title: p.UserID + "'s chat"})
				if err == nil {
					_, err = s.AddMessages(ctx, p, v.ID, idflow.Message{Role: "user", Content: "my secret"})
				}
				return v.ID, err
			},
			get: func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) (any, error) {
				v, err := s.GetSession(ctx, p, id)
				if err != nil {
					return nil, err
				}
				m, err := s.ListMessages(ctx, p, id, idflow.Page{})
				return []any{v, m}, err
			},
			byID: map[string]func(context.Context, idflow.Store, idflow.Principal, string) error{
				"UpdateSession": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.UpdateSession(ctx, p, id, idflow.SessionPatch{Title: ptr("taken")})
					return err
				},
				"AddMessages": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.AddMessages(ctx, p, id, idflow.Message{Role: "user", Content: "injected"})
					return err
				},
				"ListMessages": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.ListMessages(ctx, p, id, idflow.Page{})
					return err
				},
				"RecentMessages": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.RecentMessages(ctx, p, id, 10)
					return err
				},
				"DeleteSession": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					return s.DeleteSession(ctx, p, id)
				},
			},
			list: listerNamed("sessions").list},
		{kind: "agent", prefix: idflow.PrefixAgent,
			create: func(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error) {
				v, err := s.CreateAgent(ctx, p, idflow.Agent{Name: p.UserID + "'s agent", Tools: []string{"mail"}})
				return v.ID, err
			},
			get: func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) (any, error) {
				return s.GetAgent(ctx, p, id)
			},
			byID: map[string]func(context.Context, idflow.Store, idflow.Principal, string) error{
				"UpdateAgent": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.UpdateAgent(ctx, p, id, idflow.AgentPatch{Tools: &[]string{"exfiltrate"}})
					return err
				},
				"DeleteAgent": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					return s.DeleteAgent(ctx, p, id)
				},
			},
			list: listerNamed("agents").list},
		{kind: "workflow", prefix: idflow.PrefixWorkflow,
			create: func(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error) {
				v, err := s.CreateWorkflow(ctx, p, idflow.Workflow{Name: p.UserID + "'s workflow", Definition: def})
				if err == nil {
					_, err = s.PublishWorkflow(ctx, p, v.ID)
				}
				return v.ID, err
			},
			get: func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) (any, error) {
				w, err := s.GetWorkflow(ctx, p, id)
				if err != nil {
					return nil, err
				}
				v1, err := s.GetWorkflowVersion(ctx, p, id, 1)
				return []any{w, v1}, err
			},
			byID: map[string]func(context.Context, idflow.Store, idflow.Principal, string) error{
				"ReplaceWorkflow": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.ReplaceWorkflow(ctx, p, id, "taken", idflow.Definition{})
					return err
				},
				"PublishWorkflow": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.PublishWorkflow(ctx, p, id)
					return err
				},
				"GetWorkflowVersion(0)": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.GetWorkflowVersion(ctx, p, id, 0)
					return err
				},
				"GetWorkflowVersion(1)": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					_, err := s.GetWorkflowVersion(ctx, p, id, 1)
					return err
				},
				"DeleteWorkflow": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					return s.DeleteWorkflow(ctx, p, id)
				},
			},
			list: listerNamed("workflows").list},
		{kind: "document", prefix: idflow.PrefixDocument,
			create: func(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error) {
				v, err := s.CreateDocument(ctx, p, idflow.Document{Filename: p.UserID + ".txt"},
					[]string{p.UserID + " keeps the zebra passport in the safe"})
				return v.ID, err
			},
			get: func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) (any, error) {
				return s.GetDocument(ctx, p, id)
			},
			byID: map[string]func(context.Context, idflow.Store, idflow.Principal, string) error{
				"DeleteDocument": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					return s.DeleteDocument(ctx, p, id)
				},
			},
			list: listerNamed("documents").list},
		{kind: "fact", prefix: idflow.PrefixFact,
			create: func(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error) {
				v, err := s.CreateFact(ctx, p, idflow.Fact{Content: p.UserID + " has a zebra tattoo"})
				return v.ID, err
			},
			get: func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) (any, error) {
				return s.GetFact(ctx, p, id)
			},
			byID: map[string]func(context.Context, idflow.Store, idflow.Principal, string) error{
				"DeleteFact": func(ctx context.Context, s idflow.Store, p idflow.Principal, id string) error {
					return s.DeleteFact(ctx, p, id)
				},
			},
			list: listerNamed("facts").list},
	}
}

// testIsolation: alice and bob share tenant t-one, carol is in t-two. Neither
// bob nor carol can tell alice's objects from objects that do not exist, and
// nothing they try changes them.
func testIsolation(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	users := []idflow.Principal{alice, bob, carol}
	own := map[string]map[string]string{} // user -> kind -> id
	for _, p := range users {
		own[p.UserID] = map[string]string{}
		for _, r := range resources() {
			own[p.UserID][r.kind] = must(r.create(ctx, s, p))(t)
		}
		must(s.RecordAudit(ctx, idflow.AuditEvent{UserID: p.UserID, TenantID: p.TenantID, Action: "login",
			Outcome: idflow.OutcomeSuccess}))(t)
	}
	aliceOf := own[alice.UserID]

	for _, r := range resources() {
		t.Run(r.kind, func(t *testing.T) {
			id := aliceOf[r.kind]
			before := must(r.get(ctx, s, alice, id))(t)
			for _, p := range []idflow.Principal{bob, carol} {
				missing := idflow.NewID(r.prefix)
				_, err := r.get(ctx, s, p, id)
				wantNotFound(t, err, r.kind)
				_, errMissing := r.get(ctx, s, p, missing)
				if err.Error() != errMissing.Error() {
					t.Fatalf("%s: another user's %s answers %q, a missing one %q", p.UserID, r.kind, err, errMissing)
				}
				for name, call := range r.byID {
					err := call(ctx, s, p, id)
					wantNotFound(t, err, r.kind)
					if errMissing := call(ctx, s, p, missing); err.Error() != errMissing.Error() {
						t.Fatalf("%s %s: another user's object answers %q, a missing one %q", p.UserID, name, err, errMissing)
					}
				}
				seen, _, err := r.list(ctx, s, p, idflow.Page{Limit: idflow.MaxPageLimit})
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(seen, id) || !slices.Contains(seen, own[p.UserID][r.kind]) {
					t.Fatalf("%s lists %v: want their own %s %s and not alice's %s", p.UserID, seen, r.kind, own[p.UserID][r.kind], id)
				}
			}
			sameJSON(t, must(r.get(ctx, s, alice, id))(t), before)
		})
	}

	t.Run("references", func(t *testing.T) {
		for _, p := range []idflow.Principal{bob, carol} {
			_, err := s.CreateSession(ctx, p, idflow.ChatSession{AppID: aliceOf["app"]})
			wantNotFound(t, err, "app")
			_, err = s.CreateSession(ctx, p, idflow.ChatSession{AgentID: aliceOf["agent"]})
			wantNotFound(t, err, "agent")
			mine := own[p.UserID]["session"]
			before := must(s.GetSession(ctx, p, mine))(t)
			_, err = s.UpdateSession(ctx, p, mine, idflow.SessionPatch{AppID: ptr(aliceOf["app"])})
			wantNotFound(t, err, "app")
			_, err = s.UpdateSession(ctx, p, mine, idflow.SessionPatch{AgentID: ptr(aliceOf["agent"])})
			wantNotFound(t, err, "agent")
			sameJSON(t, must(s.GetSession(ctx, p, mine))(t), before)
			_, err = s.CreateDocument(ctx, p, idflow.Document{AppID: aliceOf["app"]}, []string{"planted"})
			wantNotFound(t, err, "app")
			_, err = s.CreateFact(ctx, p, idflow.Fact{Content: "planted", SourceDocumentID: aliceOf["document"]})
			wantNotFound(t, err, "document")
			l := must(s.ListSessions(ctx, p, idflow.SessionFilter{AppID: aliceOf["app"]}, idflow.Page{}))(t)
			if len(l.Items) != 0 {
				t.Fatalf("%s filtering sessions by alice's app got %+v", p.UserID, l.Items)
			}
		}
	})

	t.Run("search", func(t *testing.T) {
		for _, p := range []idflow.Principal{bob, carol} {
			got := must(s.SearchFacts(ctx, p, "zebra alice", 50))(t)
			if len(got) == 0 {
				t.Fatalf("%s found none of their own zebra facts", p.UserID)
			}
			for _, f := range got {
				if f.Fact.UserID != p.UserID {
					t.Fatalf("%s's search answered %+v", p.UserID, f.Fact)
				}
			}
			facts := must(s.ListFacts(ctx, p, idflow.Page{Limit: idflow.MaxPageLimit}))(t)
			if slices.ContainsFunc(ids(facts.Items, factUser), func(u string) bool { return u != p.UserID }) {
				t.Fatalf("%s's facts include another user's: %+v", p.UserID, facts.Items)
			}
		}
		if n := len(must(s.SearchFacts(ctx, alice, "zebra", 50))(t)); n != 2 {
			t.Fatalf("alice's zebra facts: %d, want 2 (document chunk and fact)", n)
		}
	})

	t.Run("audit", func(t *testing.T) {
		for _, p := range []idflow.Principal{bob, carol} {
			got := must(s.ListAudit(ctx, p, idflow.Page{Limit: idflow.MaxPageLimit}))(t)
			if len(got.Items) == 0 || slices.ContainsFunc(ids(got.Items, auditUser), func(u string) bool { return u != p.UserID }) {
				t.Fatalf("%s's audit list: %+v", p.UserID, got.Items)
			}
		}
	})

	// An application, even one whose client id equals a user id, owns nothing.
	t.Run("app named like a user", func(t *testing.T) {
		_, err := s.GetApp(ctx, authtest.App(alice.UserID), aliceOf["app"])
		wantCode(t, err, idflow.EFORBIDDEN)
		_, err = s.SearchFacts(ctx, authtest.App(alice.UserID), "zebra", 10)
		wantCode(t, err, idflow.EFORBIDDEN)
	})
}

// testAppOnly: an app-only or zero Principal is refused by every user method,
// and nothing is written.
func testAppOnly(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	ses := must(s.CreateSession(ctx, alice, idflow.ChatSession{Title: "x"}))(t)
	pg := idflow.Page{}
	calls := map[string]func(p idflow.Principal) error{
		"CreateApp":  func(p idflow.Principal) error { _, err := s.CreateApp(ctx, p, idflow.App{}); return err },
		"GetApp":     func(p idflow.Principal) error { _, err := s.GetApp(ctx, p, "app_x"); return err },
		"ListApps":   func(p idflow.Principal) error { _, err := s.ListApps(ctx, p, pg); return err },
		"UpdateApp":  func(p idflow.Principal) error { _, err := s.UpdateApp(ctx, p, "app_x", idflow.AppPatch{}); return err },
		"DeleteApp":  func(p idflow.Principal) error { return s.DeleteApp(ctx, p, "app_x") },
		"CreateSess": func(p idflow.Principal) error { _, err := s.CreateSession(ctx, p, idflow.ChatSession{}); return err },
		"GetSession": func(p idflow.Principal) error { _, err := s.GetSession(ctx, p, ses.ID); return err },
		"ListSessions": func(p idflow.Principal) error {
			_, err := s.ListSessions(ctx, p, idflow.SessionFilter{}, pg)
			return err
		},
		"UpdateSession": func(p idflow.Principal) error {
			_, err := s.UpdateSession(ctx, p, ses.ID, idflow.SessionPatch{})
			return err
		},
		"DeleteSession": func(p idflow.Principal) error { return s.DeleteSession(ctx, p, ses.ID) },
		"AddMessages": func(p idflow.Principal) error {
			_, err := s.AddMessages(ctx, p, ses.ID, idflow.Message{Role: "user"})
			return err
		},
		"ListMessages":   func(p idflow.Principal) error { _, err := s.ListMessages(ctx, p, ses.ID, pg); return err },
		"RecentMessages": func(p idflow.Principal) error { _, err := s.RecentMessages(ctx, p, ses.ID, 10); return err },
		"CreateAgent":    func(p idflow.Principal) error { _, err := s.CreateAgent(ctx, p, idflow.Agent{}); return err },
		"GetAgent":       func(p idflow.Principal) error { _, err := s.GetAgent(ctx, p, "agt_x"); return err },
		"ListAgents":     func(p idflow.Principal) error { _, err := s.ListAgents(ctx, p, pg); return err },
		"UpdateAgent": func(p idflow.Principal) error {
			_, err := s.UpdateAgent(ctx, p, "agt_x", idflow.AgentPatch{})
			return err
		},
		"DeleteAgent":    func(p idflow.Principal) error { return s.DeleteAgent(ctx, p, "agt_x") },
		"CreateWorkflow": func(p idflow.Principal) error { _, err := s.CreateWorkflow(ctx, p, idflow.Workflow{}); return err },
		"GetWorkflow":    func(p idflow.Principal) error { _, err := s.GetWorkflow(ctx, p, "wf_x"); return err },
		"ListWorkflows":  func(p idflow.Principal) error { _, err := s.ListWorkflows(ctx, p, pg); return err },
		"ReplaceWorkflow": func(p idflow.Principal) error {
			_, err := s.ReplaceWorkflow(ctx, p, "wf_x", "", idflow.Definition{})
			return err
		},
		"DeleteWorkflow":  func(p idflow.Principal) error { return s.DeleteWorkflow(ctx, p, "wf_x") },
		"PublishWorkflow": func(p idflow.Principal) error { _, err := s.PublishWorkflow(ctx, p, "wf_x"); return err },
		"GetWorkflowVersion": func(p idflow.Principal) error {
			_, err := s.GetWorkflowVersion(ctx, p, "wf_x", 0)
			return err
		},
		"CreateDocument": func(p idflow.Principal) error {
			_, err := s.CreateDocument(ctx, p, idflow.Document{}, []string{"x"})
			return err
		},
		"GetDocument":    func(p idflow.Principal) error { _, err := s.GetDocument(ctx, p, "doc_x"); return err },
		"ListDocuments":  func(p idflow.Principal) error { _, err := s.ListDocuments(ctx, p, pg); return err },
		"DeleteDocument": func(p idflow.Principal) error { return s.DeleteDocument(ctx, p, "doc_x") },
		"CreateFact":     func(p idflow.Principal) error { _, err := s.CreateFact(ctx, p, idflow.Fact{Content: "x"}); return err },
		"GetFact":        func(p idflow.Principal) error { _, err := s.GetFact(ctx, p, "fct_x"); return err },
		"ListFacts":      func(p idflow.Principal) error { _, err := s.ListFacts(ctx, p, pg); return err },
		"DeleteFact":     func(p idflow.Principal) error { return s.DeleteFact(ctx, p, "fct_x") },
		"SearchFacts":    func(p idflow.Principal) error { _, err := s.SearchFacts(ctx, p, "x", 10); return err },
		"TouchUser":      func(p idflow.Principal) error { return s.TouchUser(ctx, p) },
		"ListAudit":      func(p idflow.Principal) error { _, err := s.ListAudit(ctx, p, pg); return err },
		"RecordUsage": func(p idflow.Principal) error {
			return s.RecordUsage(ctx, p, "m", idflow.Usage{PromptTokens: 1}, time.Now())
		},
		"ListUsage": func(p idflow.Principal) error { _, err := s.ListUsage(ctx, p, time.Now(), time.Now()); return err },
	}
	before := must(s.Stats(ctx))(t)
	var zero idflow.Principal
	for _, p := range []idflow.Principal{svc, authtest.App(alice.UserID), zero, authtest.User("", "t-one")} {
		for name, call := range calls {
			if err := call(p); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
				t.Errorf("%s as %+v: got %v, want %s", name, p, err, idflow.EFORBIDDEN)
			}
		}
	}
	sameJSON(t, must(s.Stats(ctx))(t), before)
	if _, err := s.GetSession(ctx, alice, ses.ID); err != nil {
		t.Fatalf("alice's session after the refused calls: %v", err)
	}
}
