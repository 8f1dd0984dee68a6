package storetest

import (
	"slices"
	"testing"

	"github.com/idflow/idflow"
)

func testDocuments(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	app := must(s.CreateApp(ctx, alice, idflow.App{Name: "kb"}))(t)
	in := idflow.Document{Filename: "notes.md", ContentType: "text/markdown", Size: 42, SHA256: "abc123", AppID: app.ID, FactCount: 99}
	chunks := []string{"the kettle is in the left cupboard", "the spare key is under the blue pot", "wifi password is on the fridge"}
	d := must(s.CreateDocument(ctx, alice, in, chunks))(t)
	checkNew(t, "document", d.ID, idflow.PrefixDocument, d.UserID, alice.UserID)
	if d.Filename != in.Filename || d.ContentType != in.ContentType || d.Size != 42 || d.SHA256 != "abc123" ||
		d.AppID != app.ID || d.FactCount != len(chunks) {
		t.Fatalf("created document = %+v", d)
	}
	sameJSON(t, must(s.GetDocument(ctx, alice, d.ID))(t), d)

	facts := must(s.ListFacts(ctx, alice, idflow.Page{}))(t).Items
	var contents []string
	for _, f := range facts {
		if f.SourceDocumentID != d.ID || f.UserID != alice.UserID {
			t.Fatalf("fact made from the document: %+v", f)
		}
		contents = append(contents, f.Content)
	}
	slices.Sort(contents)
	if want := slices.Sorted(slices.Values(chunks)); !slices.Equal(contents, want) {
		t.Fatalf("facts = %q, want one per chunk %q", contents, want)
	}

	_, err := s.CreateDocument(ctx, alice, idflow.Document{Filename: "x", AppID: idflow.NewID(idflow.PrefixApp)}, []string{"orphan"})
	wantNotFound(t, err, "app")
	if n := len(must(s.ListFacts(ctx, alice, idflow.Page{}))(t).Items); n != len(chunks) {
		t.Fatalf("a refused document left facts behind: %d facts, want %d", n, len(chunks))
	}

	// Deleting the app keeps the document, with the reference cleared.
	ok(t, s.DeleteApp(ctx, alice, app.ID))
	if got := must(s.GetDocument(ctx, alice, d.ID))(t); got.AppID != "" {
		t.Fatalf("document after deleting its app: %+v", got)
	}

	// Deleting the document deletes its facts, and only those.
	own := must(s.CreateFact(ctx, alice, idflow.Fact{Content: "the kettle was a gift"}))(t)
	linked := must(s.CreateFact(ctx, alice, idflow.Fact{Content: "kettle descaled in may", SourceDocumentID: d.ID}))(t)
	if linked.SourceDocumentID != d.ID {
		t.Fatalf("fact with a source document: %+v", linked)
	}
	if n := len(must(s.SearchFacts(ctx, alice, "kettle", 10))(t)); n != 3 {
		t.Fatalf("search before delete found %d facts, want 3", n)
	}
	ok(t, s.DeleteDocument(ctx, alice, d.ID))
	_, err = s.GetDocument(ctx, alice, d.ID)
	wantNotFound(t, err, "document")
	for _, f := range append(facts, linked) {
		_, err = s.GetFact(ctx, alice, f.ID)
		wantNotFound(t, err, "fact")
	}
	left := must(s.ListFacts(ctx, alice, idflow.Page{}))(t)
	if !slices.Equal(ids(left.Items, factID), []string{own.ID}) {
		t.Fatalf("facts after deleting the document = %v, want only %s", ids(left.Items, factID), own.ID)
	}
	if got := must(s.SearchFacts(ctx, alice, "kettle", 10))(t); !slices.Equal(ids(got, scoredID), []string{own.ID}) {
		t.Fatalf("search after deleting the document = %v, want only %s", ids(got, scoredID), own.ID)
	}
	wantNotFound(t, s.DeleteDocument(ctx, alice, d.ID), "document")
	if got := must(s.ListDocuments(ctx, alice, idflow.Page{}))(t); got.Items == nil || len(got.Items) != 0 {
		t.Fatalf("ListDocuments after delete = %#v", got)
	}

	empty := must(s.CreateDocument(ctx, alice, idflow.Document{Filename: "empty.txt"}, nil))(t)
	if empty.FactCount != 0 {
		t.Fatalf("document without chunks: %+v", empty)
	}
}

func testFacts(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	f := must(s.CreateFact(ctx, alice, idflow.Fact{ID: "fct_chosen", UserID: "bob", Content: "prefers tea"}))(t)
	checkNew(t, "fact", f.ID, idflow.PrefixFact, f.UserID, alice.UserID)
	if f.Content != "prefers tea" || f.SourceDocumentID != "" || f.CreatedAt.IsZero() {
		t.Fatalf("created fact = %+v", f)
	}
	sameJSON(t, must(s.GetFact(ctx, alice, f.ID))(t), f)
	_, err := s.CreateFact(ctx, alice, idflow.Fact{Content: "x", SourceDocumentID: idflow.NewID(idflow.PrefixDocument)})
	wantNotFound(t, err, "document")

	g := must(s.CreateFact(ctx, alice, idflow.Fact{Content: "allergic to cats"}))(t)
	sameJSON(t, must(s.ListFacts(ctx, alice, idflow.Page{}))(t).Items, []idflow.Fact{g, f})
	ok(t, s.TouchUser(ctx, alice))
	ok(t, s.TouchUser(ctx, bob))
	sameJSON(t, must(s.AdminListFacts(ctx, admin, scopeOf(t, admin), alice.UserID, idflow.Page{}))(t).Items, []idflow.Fact{g, f})
	if got := must(s.AdminListFacts(ctx, admin, scopeOf(t, admin), bob.UserID, idflow.Page{}))(t); got.Items == nil || len(got.Items) != 0 {
		t.Fatalf("AdminListFacts(bob) = %#v", got)
	}

	ok(t, s.DeleteFact(ctx, alice, f.ID))
	_, err = s.GetFact(ctx, alice, f.ID)
	wantNotFound(t, err, "fact")
	wantNotFound(t, s.DeleteFact(ctx, alice, f.ID), "fact")
}

func testSearch(t *testing.T, s idflow.Store) {
	ctx := t.Context()
	both := must(s.CreateFact(ctx, alice, idflow.Fact{Content: "The quarterly budget review is on Friday with the finance team"}))(t)
	one := must(s.CreateFact(ctx, alice, idflow.Fact{Content: "Bought lunch for the team, paid from the team budget"}))(t)
	must(s.CreateFact(ctx, alice, idflow.Fact{Content: "Weekend hiking trip to the lake"}))(t)

	got := must(s.SearchFacts(ctx, alice, "quarterly budget?", 0))(t)
	if !slices.Equal(ids(got, scoredID), []string{both.ID, one.ID}) {
		t.Fatalf("search = %+v, want the fact with both terms, then the one with one term", got)
	}
	if got[0].Score <= got[1].Score || got[1].Score <= 0 {
		t.Fatalf("scores %v, %v: want positive, best first", got[0].Score, got[1].Score)
	}
	sameJSON(t, got[0].Fact, both)
	if got := must(s.SearchFacts(ctx, alice, "budget", 1))(t); len(got) != 1 {
		t.Fatalf("search with limit 1 answered %d facts", len(got))
	}
	if got := must(s.SearchFacts(ctx, alice, "BUDGETS", 10))(t); len(got) != 2 {
		t.Fatalf("search is case- and plural-sensitive: %d results for BUDGETS, want 2", len(got))
	}
	_, err := s.SearchFacts(ctx, alice, "budget", -1)
	wantCode(t, err, idflow.EINVALID)

	// Nothing the user types is FTS syntax: no error, no escape.
	for _, q := range []string{"", "   ", "?!.,;", `"`, `"budget`, "budget*", "NEAR(budget team)", "budget AND", "OR OR",
		"user_id:bob", "owner_token:x", "content:budget", "{content}:team", "^budget", "budget -team", "(", ")", "\x00", "\xff\xfe"} {
		res, err := s.SearchFacts(ctx, alice, q, 10)
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		if res == nil {
			t.Fatalf("search %q answered nil, want a non-nil slice", q)
		}
		for _, r := range res {
			if r.Fact.UserID != alice.UserID {
				t.Fatalf("search %q answered another user's fact %+v", q, r.Fact)
			}
		}
	}
	if got := must(s.SearchFacts(ctx, alice, "?!.,;", 10))(t); len(got) != 0 {
		t.Fatalf("all-punctuation search answered %+v", got)
	}
	if got := must(s.SearchFacts(ctx, alice, "submarine", 10))(t); got == nil || len(got) != 0 {
		t.Fatalf("search without a match = %#v, want empty and non-nil", got)
	}

	// The limit is clamped.
	chunks := make([]string, 60)
	for i := range chunks {
		chunks[i] = "recurring standup note"
	}
	must(s.CreateDocument(ctx, alice, idflow.Document{Filename: "standups.txt"}, chunks))(t)
	if got := must(s.SearchFacts(ctx, alice, "standup", 1000))(t); len(got) != 50 {
		t.Fatalf("search with limit 1000 answered %d facts, want the maximum 50", len(got))
	}
	if got := must(s.SearchFacts(ctx, alice, "standup", 0))(t); len(got) != 10 {
		t.Fatalf("search with limit 0 answered %d facts, want the default 10", len(got))
	}
}
