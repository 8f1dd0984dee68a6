package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/idflow/idflow"
)

// lister is one paginated list of the Store, reduced to ids.
type lister struct {
	name string
	asc  bool // oldest first
	// seed creates n items for p and answers their ids in creation order.
	seed func(ctx context.Context, t *testing.T, s idflow.Store, p idflow.Principal, n int) []string
	list func(ctx context.Context, s idflow.Store, p idflow.Principal, page idflow.Page) ([]string, string, error)
}

// listIDs adapts a Store list method to lister.list.
func listIDs[T any](id func(T) string, call func(ctx context.Context, s idflow.Store, p idflow.Principal, page idflow.Page) (idflow.List[T], error)) func(context.Context, idflow.Store, idflow.Principal, idflow.Page) ([]string, string, error) {
	return func(ctx context.Context, s idflow.Store, p idflow.Principal, page idflow.Page) ([]string, string, error) {
		l, err := call(ctx, s, p, page)
		if err == nil && l.Items == nil {
			err = fmt.Errorf("Items is nil; an empty page must encode as []")
		}
		return ids(l.Items, id), l.NextCursor, err
	}
}

// seedN calls create n times.
func seedN(create func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error)) func(context.Context, *testing.T, idflow.Store, idflow.Principal, int) []string {
	return func(ctx context.Context, t *testing.T, s idflow.Store, p idflow.Principal, n int) []string {
		t.Helper()
		out := make([]string, n)
		for i := range out {
			out[i] = must(create(ctx, s, p, i))(t)
		}
		return out
	}
}

func listers() []lister {
	return []lister{
		{name: "apps",
			seed: seedN(func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error) {
				a, err := s.CreateApp(ctx, p, idflow.App{Name: fmt.Sprint("app ", i)})
				return a.ID, err
			}),
			list: listIDs(appID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.App], error) {
				return s.ListApps(ctx, p, pg)
			})},
		{name: "sessions",
			seed: seedN(func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error) {
				v, err := s.CreateSession(ctx, p, idflow.ChatSession{Title: fmt.Sprint("session ", i)})
				return v.ID, err
			}),
			list: listIDs(sessionID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.ChatSession], error) {
				return s.ListSessions(ctx, p, idflow.SessionFilter{}, pg)
			})},
		{name: "agents",
			seed: seedN(func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error) {
				v, err := s.CreateAgent(ctx, p, idflow.Agent{Name: fmt.Sprint("agent ", i)})
				return v.ID, err
			}),
			list: listIDs(agentID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.Agent], error) {
				return s.ListAgents(ctx, p, pg)
			})},
		{name: "workflows",
			seed: seedN(func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error) {
				v, err := s.CreateWorkflow(ctx, p, idflow.Workflow{Name: fmt.Sprint("workflow ", i)})
				return v.ID, err
			}),
			list: listIDs(workflowID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.Workflow], error) {
				return s.ListWorkflows(ctx, p, pg)
			})},
		{name: "documents",
			seed: seedN(func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error) {
				v, err := s.CreateDocument(ctx, p, idflow.Document{Filename: fmt.Sprint("doc", i, ".txt")}, nil)
				return v.ID, err
			}),
			list: listIDs(documentID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.Document], error) {
				return s.ListDocuments(ctx, p, pg)
			})},
		{name: "facts",
			seed: seedN(func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error) {
				v, err := s.CreateFact(ctx, p, idflow.Fact{Content: fmt.Sprint("fact ", i)})
				return v.ID, err
			}),
			list: listIDs(factID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.Fact], error) {
				return s.ListFacts(ctx, p, pg)
			})},
		{name: "audit",
			seed: seedN(func(ctx context.Context, s idflow.Store, p idflow.Principal, i int) (string, error) {
				v, err := s.RecordAudit(ctx, idflow.AuditEvent{UserID: p.UserID, TenantID: p.TenantID,
					Action: fmt.Sprint("test.", i), Outcome: idflow.OutcomeSuccess})
				return v.ID, err
			}),
			list: listIDs(auditID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.AuditEvent], error) {
				return s.ListAudit(ctx, p, pg)
			})},
		{name: "messages", asc: true,
			// All of a user's messages go to one session, named "chat".
			seed: func(ctx context.Context, t *testing.T, s idflow.Store, p idflow.Principal, n int) []string {
				id := chatOf(ctx, t, s, p)
				var out []string
				for i := range n {
					m := must(s.AddMessages(ctx, p, id, idflow.Message{Role: "user", Content: fmt.Sprint("message ", i)}))(t)
					out = append(out, m[0].ID)
				}
				return out
			},
			list: listIDs(messageID, func(ctx context.Context, s idflow.Store, p idflow.Principal, pg idflow.Page) (idflow.List[idflow.Message], error) {
				id, err := findChat(ctx, s, p)
				if err != nil {
					return idflow.List[idflow.Message]{}, err
				}
				return s.ListMessages(ctx, p, id, pg)
			})},
	}
}

func listerNamed(name string) lister {
	for _, l := range listers() {
		if l.name == name {
			return l
		}
	}
	panic("storetest: no lister " + name)
}

// chatOf answers p's session titled "chat", creating it if needed.
func chatOf(ctx context.Context, t *testing.T, s idflow.Store, p idflow.Principal) string {
	t.Helper()
	id, err := findChat(ctx, s, p)
	if idflow.ErrorCode(err) == idflow.ENOTFOUND {
		return must(s.CreateSession(ctx, p, idflow.ChatSession{Title: "chat"}))(t).ID
	}
	return must(id, err)(t)
}

func findChat(ctx context.Context, s idflow.Store, p idflow.Principal) (string, error) {
	l, err := s.ListSessions(ctx, p, idflow.SessionFilter{}, idflow.Page{Limit: idflow.MaxPageLimit})
	if err != nil {
		return "", err
	}
	for _, v := range l.Items {
		if v.Title == "chat" {
			return v.ID, nil
		}
	}
	return "", idflow.NotFound("session")
}

func testPagination(t *testing.T, open func(t *testing.T) idflow.Store) {
	for _, l := range listers() {
		t.Run(l.name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t)
			if l.name == "messages" {
				chatOf(ctx, t, s, bob)
			}
			if got, next, err := l.list(ctx, s, bob, idflow.Page{}); err != nil || len(got) != 0 || next != "" {
				t.Fatalf("empty list = %v, %q, %v", got, next, err)
			}
			created := l.seed(ctx, t, s, alice, 7)
			theirs := l.seed(ctx, t, s, bob, 2)
			want := slices.Clone(created)
			if !l.asc {
				slices.Reverse(want)
			}

			// Pages of 3: 3 + 3 + 1, each cursor leading to the next, no
			// duplicates, no gaps, in order.
			var all []string
			var cursors []string
			page := idflow.Page{Limit: 3}
			for i := 0; ; i++ {
				got, next, err := l.list(ctx, s, alice, page)
				if err != nil {
					t.Fatalf("page %d: %v", i, err)
				}
				if wantLen := []int{3, 3, 1}[min(i, 2)]; len(got) != wantLen || i > 2 {
					t.Fatalf("page %d has %d items, want %d (pages so far %v)", i, len(got), wantLen, all)
				}
				all = append(all, got...)
				if next == "" {
					break
				}
				cursors = append(cursors, next)
				page.Cursor = next
			}
			if !slices.Equal(all, want) {
				t.Fatalf("paged through %v\nwant          %v", all, want)
			}
			if len(cursors) != 2 {
				t.Fatalf("got %d cursors, want 2", len(cursors))
			}

			// A page that ends exactly at the last item has no next cursor.
			if got, next, err := l.list(ctx, s, alice, idflow.Page{Limit: 7}); err != nil || !slices.Equal(got, want) || next != "" {
				t.Fatalf("limit 7 = %v, %q, %v; want all items and no cursor", got, next, err)
			}
			if got, next, err := l.list(ctx, s, alice, idflow.Page{}); err != nil || !slices.Equal(got, want) || next != "" {
				t.Fatalf("default limit = %v, %q, %v", got, next, err)
			}

			// Another user's cursor only moves within the caller's own rows.
			got, _, err := l.list(ctx, s, bob, idflow.Page{Limit: 3, Cursor: cursors[0]})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range got {
				if !slices.Contains(theirs, id) {
					t.Fatalf("bob's list with alice's cursor answered %s, not one of bob's %v", id, theirs)
				}
			}

			for _, c := range []string{"!!!", "bm90LWEtY3Vyc29y", "%00", "e30"} {
				_, _, err := l.list(ctx, s, alice, idflow.Page{Cursor: c})
				wantCode(t, err, idflow.EINVALID)
			}
			_, _, err = l.list(ctx, s, alice, idflow.Page{Limit: -1})
			wantCode(t, err, idflow.EINVALID)
		})
	}

	t.Run("clamp", func(t *testing.T) {
		ctx := t.Context()
		s := open(t)
		chunks := make([]string, idflow.MaxPageLimit+5)
		for i := range chunks {
			chunks[i] = fmt.Sprint("chunk ", i)
		}
		must(s.CreateDocument(ctx, alice, idflow.Document{Filename: "big.txt"}, chunks))(t)
		first := must(s.ListFacts(ctx, alice, idflow.Page{Limit: 1000}))(t)
		if len(first.Items) != idflow.MaxPageLimit || first.NextCursor == "" {
			t.Fatalf("limit 1000 answered %d items (cursor %q), want %d and a cursor", len(first.Items), first.NextCursor, idflow.MaxPageLimit)
		}
		rest := must(s.ListFacts(ctx, alice, idflow.Page{Limit: 1000, Cursor: first.NextCursor}))(t)
		if len(rest.Items) != 5 || rest.NextCursor != "" {
			t.Fatalf("second page: %d items, cursor %q; want 5 and none", len(rest.Items), rest.NextCursor)
		}
		seen := map[string]bool{}
		for _, f := range append(first.Items, rest.Items...) {
			if seen[f.ID] {
				t.Fatalf("fact %s listed twice", f.ID)
			}
			seen[f.ID] = true
		}
		def := must(s.ListFacts(ctx, alice, idflow.Page{}))(t)
		if len(def.Items) != idflow.DefaultPageLimit || def.NextCursor == "" {
			t.Fatalf("default limit answered %d items, want %d", len(def.Items), idflow.DefaultPageLimit)
		}
	})
}
