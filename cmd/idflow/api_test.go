package main

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

// multipartBody builds a multipart/form-data body; parts are (field,
// filename, content); an empty filename makes a plain form field.
func multipartBody(t testing.TB, parts ...[3]string) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		if p[1] != "" {
			h.Set("Content-Disposition", `form-data; name="`+p[0]+`"; filename="`+p[1]+`"`)
			h.Set("Content-Type", "text/markdown")
		} else {
			h.Set("Content-Disposition", `form-data; name="`+p[0]+`"`)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(p[2])); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// userWorld is what one user made through the API.
type userWorld struct {
	who                                       string
	app, agent, session, workflow, run        string
	docJSON, docMultipart, fact               string
	docJSONBytes, docMultipartBytes, factText string
	messages                                  []string
}

// build makes one object of every kind as who. word makes the texts unique
// to the user, so that a search can only match its owner's facts.
func buildWorld(t *testing.T, s *prodServer, who, word string) *userWorld {
	t.Helper()
	w := &userWorld{who: who}
	w.app = s.create(t, who, "/api/v1/apps", map[string]any{"name": word + " app", "description": "the " + word + " app"})
	w.agent = s.create(t, who, "/api/v1/agents", map[string]any{"name": word + " agent", "instructions": "speak of " + word})
	w.session = s.create(t, who, "/api/v1/sessions", map[string]any{"title": word + " chat", "app_id": w.app, "agent_id": w.agent})
	r := s.As(t, who, "POST", "/api/v1/sessions/"+w.session+"/messages", map[string]any{"content": "tell me about " + word})
	mustStatus(t, r, http.StatusCreated)
	var sent struct{ Message, Reply object }
	r.JSON(t, &sent)
	for _, m := range []object{sent.Message, sent.Reply} {
		if m.UserID != s.UserID(t, who) {
			t.Fatalf("%s: message of user %q; want %q", r, m.UserID, s.UserID(t, who))
		}
		w.messages = append(w.messages, m.ID)
	}
	w.workflow = s.create(t, who, "/api/v1/workflows", quickWorkflow(word+" workflow"))
	w.run = s.create(t, who, "/api/v1/workflows/"+w.workflow+"/runs", map[string]any{"input": word})
	s.waitRun(t, who, w.run)

	w.docJSONBytes = "Notes on " + word + " zephyrine.\n\nA second paragraph about " + word + " quillwort."
	w.docJSON = s.create(t, who, "/api/v1/etl/ingest", map[string]any{"filename": word + ".txt", "content": w.docJSONBytes, "app_id": w.app})
	w.docMultipartBytes = "# " + word + " handbook\n\nUploaded as a file: " + word + " marmalade.\n"
	body, ct := multipartBody(t, [3]string{"file", word + "-handbook.md", w.docMultipartBytes}, [3]string{"app_id", "", w.app})
	r = s.As(t, who, "POST", "/api/v1/etl/ingest", body, header{"Content-Type", ct})
	mustStatus(t, r, http.StatusCreated)
	var d object
	r.JSON(t, &d)
	if d.UserID != s.UserID(t, who) {
		t.Fatalf("%s: document of user %q", r, d.UserID)
	}
	w.docMultipart = d.ID
	// Every word of the fact is the user's own: a search for it can match
	// nothing of anyone else's.
	w.factText = word + " " + word + "phrase " + word + "gem"
	w.fact = s.create(t, who, "/api/v1/facts", map[string]any{"content": w.factText})
	return w
}

// ids lists every id of w.
func (w *userWorld) ids() []string {
	return append([]string{w.app, w.agent, w.session, w.workflow, w.run, w.docJSON, w.docMultipart, w.fact}, w.messages...)
}

func itemIDs(t *testing.T, items []json.RawMessage) []string {
	t.Helper()
	var out []string
	for _, raw := range items {
		var o object
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatal(err)
		}
		out = append(out, o.ID)
	}
	return out
}

func TestIsolationByFlow(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	alice := buildWorld(t, s, callerAlice, "aardvark")
	bob := buildWorld(t, s, callerBob, "bumblebee")
	worlds := map[string]*userWorld{callerAlice: alice, callerBob: bob}
	other := map[string]*userWorld{callerAlice: bob, callerBob: alice}

	t.Run("lists hold only the caller's objects", func(t *testing.T) {
		for who, w := range worlds {
			uid := s.UserID(t, who)
			for path, want := range map[string][]string{
				"/api/v1/apps":      {w.app},
				"/api/v1/agents":    {w.agent},
				"/api/v1/sessions":  {w.session},
				"/api/v1/workflows": {w.workflow},
				"/api/v1/runs":      {w.run},
				"/api/v1/documents": {w.docJSON, w.docMultipart},
				"/api/v1/sessions/" + w.session + "/messages": w.messages,
			} {
				items := s.listAll(t, who, path)
				got := itemIDs(t, items)
				if !sameSet(got, want) {
					t.Errorf("GET %s as %s: ids %v; want exactly %v", path, who, got, want)
				}
				checkOwned(t, items, uid, path)
			}
			facts := s.listAll(t, who, "/api/v1/facts")
			checkOwned(t, facts, uid, "/api/v1/facts")
			got := itemIDs(t, facts)
			if !slices.Contains(got, w.fact) {
				t.Errorf("%s's facts %v lack the fact %s", who, got, w.fact)
			}
			for _, id := range other[who].ids() {
				if slices.Contains(got, id) {
					t.Errorf("%s's facts hold the other user's %s", who, id)
				}
			}
			// The seed-compatible route with "me" and with one's own id.
			for _, p := range []string{"/api/v1/users/me/facts", "/api/v1/users/" + uid + "/facts"} {
				if ids := itemIDs(t, s.listAll(t, who, p)); !sameSet(ids, got) {
					t.Errorf("GET %s as %s: %v; want the caller's facts %v", p, who, ids, got)
				}
			}
			if r := s.As(t, who, "GET", "/api/v1/users/"+s.UserID(t, otherName(who))+"/facts", nil); r.Status != http.StatusNotFound {
				t.Errorf("%s reading the other user's facts: %s; want 404", who, r)
			}
		}
	})

	t.Run("gets answer the owner and 404 to anyone else", func(t *testing.T) {
		for who, w := range worlds {
			paths := []string{
				"/api/v1/apps/" + w.app, "/api/v1/agents/" + w.agent, "/api/v1/sessions/" + w.session,
				"/api/v1/sessions/" + w.session + "/messages", "/api/v1/workflows/" + w.workflow,
				"/api/v1/runs/" + w.run, "/api/v1/runs/" + w.run + "/events",
				"/api/v1/documents/" + w.docJSON, "/api/v1/documents/" + w.docMultipart, "/api/v1/facts/" + w.fact,
			}
			for _, p := range paths {
				mustStatus(t, s.As(t, who, "GET", p, nil), http.StatusOK)
				checkProblem(t, s.As(t, otherName(who), "GET", p, nil), http.StatusNotFound)
				checkProblem(t, s.As(t, callerCarol, "GET", p, nil), http.StatusNotFound)
			}
		}
	})

	t.Run("run events carry the owner's id", func(t *testing.T) {
		for who, w := range worlds {
			r := s.As(t, who, "GET", "/api/v1/runs/"+w.run+"/events", nil)
			mustStatus(t, r, http.StatusOK)
			var evs struct{ Items []idflow.Event }
			r.JSON(t, &evs)
			if len(evs.Items) == 0 {
				t.Fatalf("%s: no events", r)
			}
			for _, e := range evs.Items {
				if e.UserID != s.UserID(t, who) {
					t.Errorf("run %s event %d %s has user_id %q; want %q", w.run, e.Seq, e.Type, e.UserID, s.UserID(t, who))
				}
			}
		}
	})

	t.Run("memory search finds only the caller's facts", func(t *testing.T) {
		for who, w := range worlds {
			mine := searchIDs(t, s, who, w.factText)
			if !slices.Contains(mine, w.fact) {
				t.Errorf("%s searching her own fact text: %v; want %s among them", who, mine, w.fact)
			}
			theirs := searchIDs(t, s, who, other[who].factText)
			if len(theirs) != 0 {
				t.Errorf("%s searching the other user's exact fact text found %v; want nothing", who, theirs)
			}
			// Words only in the other's documents find nothing either.
			for _, q := range []string{"zephyrine", "marmalade", "quillwort"} {
				for _, id := range searchIDs(t, s, who, q) {
					if slices.Contains(allFactIDs(t, s, otherName(who)), id) {
						t.Errorf("%s searching %q found the other user's fact %s", who, q, id)
					}
				}
			}
		}
	})

	t.Run("references to another user's objects are not found", func(t *testing.T) {
		before := s.listAll(t, callerBob, "/api/v1/sessions")
		for name, body := range map[string]map[string]any{
			"app":   {"title": "sneaky", "app_id": alice.app},
			"agent": {"title": "sneaky", "agent_id": alice.agent},
			"both":  {"title": "sneaky", "app_id": bob.app, "agent_id": alice.agent},
		} {
			r := s.As(t, callerBob, "POST", "/api/v1/sessions", body)
			if r.Status != http.StatusNotFound {
				t.Errorf("bob's session referencing alice's %s: %s; want 404", name, r)
			}
			checkProblem(t, r, http.StatusNotFound)
		}
		if after := s.listAll(t, callerBob, "/api/v1/sessions"); len(after) != len(before) {
			t.Errorf("refused session creations left %d new sessions", len(after)-len(before))
		}
		snapshot := s.As(t, callerBob, "GET", "/api/v1/sessions/"+bob.session, nil)
		for _, body := range []map[string]any{{"app_id": alice.app}, {"agent_id": alice.agent}} {
			checkProblem(t, s.As(t, callerBob, "PATCH", "/api/v1/sessions/"+bob.session, body), http.StatusNotFound)
		}
		if now := s.As(t, callerBob, "GET", "/api/v1/sessions/"+bob.session, nil); !bytes.Equal(now.Body, snapshot.Body) {
			t.Errorf("refused patches changed bob's session:\nbefore %s\nafter  %s", snapshot.Body, now.Body)
		}
		checkProblem(t, s.As(t, callerBob, "POST", "/api/v1/etl/ingest",
			map[string]any{"filename": "x.txt", "content": "x", "app_id": alice.app}), http.StatusNotFound)
		if items := s.listAll(t, callerBob, "/api/v1/sessions?app_id="+alice.app); len(items) != 0 {
			t.Errorf("bob filtering by alice's app sees %d sessions", len(items))
		}
	})

	t.Run("document content is the original bytes, for the owner only", func(t *testing.T) {
		for who, w := range worlds {
			for id, want := range map[string]string{w.docJSON: w.docJSONBytes, w.docMultipart: w.docMultipartBytes} {
				r := s.As(t, who, "GET", "/api/v1/documents/"+id+"/content", nil)
				mustStatus(t, r, http.StatusOK)
				if string(r.Body) != want {
					t.Errorf("%s: content %q; want the uploaded %q", r.Path, r.Body, want)
				}
				if !strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment") {
					t.Errorf("%s: Content-Disposition %q; want an attachment", r.Path, r.Header.Get("Content-Disposition"))
				}
				checkProblem(t, s.As(t, otherName(who), "GET", "/api/v1/documents/"+id+"/content", nil), http.StatusNotFound)
			}
		}
	})

	t.Run("deleting a document removes its facts", func(t *testing.T) {
		id := s.create(t, callerAlice, "/api/v1/etl/ingest", map[string]any{"filename": "gone.txt",
			"content": "The xylophonist parade.\n\nA second paragraph on xylophonist habits."})
		var fromDoc []string
		for _, raw := range s.listAll(t, callerAlice, "/api/v1/facts") {
			var f idflow.Fact
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			if f.SourceDocumentID == id {
				fromDoc = append(fromDoc, f.ID)
			}
		}
		if len(fromDoc) != 2 {
			t.Fatalf("the document made %d facts; want 2", len(fromDoc))
		}
		if found := searchIDs(t, s, callerAlice, "xylophonist"); len(found) == 0 {
			t.Fatal("the document's facts are not searchable")
		}
		checkProblem(t, s.As(t, callerBob, "DELETE", "/api/v1/documents/"+id, nil), http.StatusNotFound)
		mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/documents/"+id, nil), http.StatusOK)
		mustStatus(t, s.As(t, callerAlice, "DELETE", "/api/v1/documents/"+id, nil), http.StatusNoContent)
		for _, f := range fromDoc {
			checkProblem(t, s.As(t, callerAlice, "GET", "/api/v1/facts/"+f, nil), http.StatusNotFound)
		}
		if found := searchIDs(t, s, callerAlice, "xylophonist"); len(found) != 0 {
			t.Errorf("after deleting the document, search still finds %v", found)
		}
		checkProblem(t, s.As(t, callerAlice, "GET", "/api/v1/documents/"+id, nil), http.StatusNotFound)
		checkProblem(t, s.As(t, callerAlice, "GET", "/api/v1/documents/"+id+"/content", nil), http.StatusNotFound)
		// Alice's other documents are untouched.
		mustStatus(t, s.As(t, callerAlice, "GET", "/api/v1/documents/"+alice.docJSON+"/content", nil), http.StatusOK)
	})

	t.Run("a user_id in a body is ignored", func(t *testing.T) {
		aliceID := s.UserID(t, callerAlice)
		for path, body := range map[string]map[string]any{
			"/api/v1/apps":       {"name": "planted", "user_id": aliceID},
			"/api/v1/agents":     {"name": "planted", "user_id": aliceID},
			"/api/v1/sessions":   {"title": "planted", "user_id": aliceID},
			"/api/v1/workflows":  {"name": "planted", "user_id": aliceID, "definition": map[string]any{"steps": []any{}}},
			"/api/v1/facts":      {"content": "planted", "user_id": aliceID},
			"/api/v1/etl/ingest": {"filename": "planted.txt", "content": "planted", "user_id": aliceID},
		} {
			id := s.create(t, callerBob, path, body) // create checks user_id == bob
			if ids := itemIDs(t, s.listAll(t, callerAlice, strings.Replace(path, "/etl/ingest", "/documents", 1))); slices.Contains(ids, id) {
				t.Errorf("POST %s by bob with alice's user_id: alice's list holds %s", path, id)
			}
		}
	})

	t.Run("the scoped cache never answers another user", func(t *testing.T) {
		p := "/api/v1/sessions/" + alice.session
		first := s.As(t, callerAlice, "GET", p, nil)
		mustStatus(t, first, http.StatusOK)
		second := s.As(t, callerAlice, "GET", p, nil) // from the cache
		if !bytes.Equal(first.Body, second.Body) {
			t.Errorf("cached answer differs:\n%s\n%s", first.Body, second.Body)
		}
		for _, who := range []string{callerBob, callerCarol, callerAdmin} {
			checkProblem(t, s.As(t, who, "GET", p, nil), http.StatusNotFound)
			checkProblem(t, s.As(t, who, "POST", p+"/messages", map[string]any{"content": "via the cache?"}), http.StatusNotFound)
		}
		// A write invalidates the entry: alice sees her new title at once.
		mustStatus(t, s.As(t, callerAlice, "PATCH", p, map[string]any{"title": "renamed aardvark chat"}), http.StatusOK)
		var c struct{ Title string }
		s.As(t, callerAlice, "GET", p, nil).JSON(t, &c)
		if c.Title != "renamed aardvark chat" {
			t.Errorf("after PATCH, GET answers title %q from a stale cache", c.Title)
		}
	})

	t.Run("a user's audit holds only their own events", func(t *testing.T) {
		rid := s.RequestID("alice-audited")
		r := s.As(t, callerAlice, "POST", "/api/v1/facts", map[string]any{"content": "audited fact"}, header{"X-Request-Id", rid})
		mustStatus(t, r, http.StatusCreated)
		if len(findAudit(s.auditEvents(t, callerAlice, "/api/v1/audit"), rid)) == 0 {
			t.Fatalf("alice's audit lacks her request %s", rid)
		}
		aliceID := s.UserID(t, callerAlice)
		for _, who := range []string{callerBob, callerCarol} {
			events := s.auditEvents(t, who, "/api/v1/audit")
			if len(events) == 0 {
				t.Errorf("%s's audit is empty; want at least their own writes and denials", who)
			}
			if got := findAudit(events, rid); len(got) != 0 {
				t.Errorf("%s's audit holds alice's event %+v", who, got)
			}
			for _, e := range events {
				if e.UserID != s.UserID(t, who) || e.UserID == aliceID {
					t.Errorf("%s's audit holds an event of %q: %+v", who, e.UserID, e)
				}
			}
		}
	})

	// The audit hash chain (VerifyAuditChain) is exposed by no route, so it
	// is not checked through HTTP here; the store tests cover it.

	t.Run("lookups need authentication", func(t *testing.T) {
		for _, p := range []string{"/api/v1/llms", "/api/v1/personas", "/api/v1/tags"} {
			r := s.Do(t, "GET", p, "", nil)
			checkProblem(t, r, http.StatusUnauthorized)
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q", r, r.Header.Get("WWW-Authenticate"))
			}
			checkProblem(t, s.As(t, callerExpired, "GET", p, nil), http.StatusUnauthorized)
			ok := s.As(t, callerBob, "GET", p, nil)
			mustStatus(t, ok, http.StatusOK)
			var l listPage
			ok.JSON(t, &l)
			if len(l.Items) == 0 {
				t.Errorf("%s: no items", ok)
			}
		}
	})

	t.Run("a forged identity header is refused and audited", func(t *testing.T) {
		aliceID := s.UserID(t, callerAlice)
		for _, h := range []header{{"X-Authenticated-User", aliceID}, {"X-Authenticated-Email", "alice@t-one.example"}} {
			rid := s.RequestID("spoof")
			r := s.As(t, callerBob, "GET", "/api/v1/facts", nil, h, header{"X-Request-Id", rid})
			checkProblem(t, r, http.StatusUnauthorized)
			if strings.Contains(string(r.Body), alice.fact) {
				t.Fatalf("the forged header read alice's facts: %s", r)
			}
			// Nobody was authenticated: the event has no tenant, and
			// only the platform admin reads it.
			events := findAudit(s.auditEvents(t, callerRoot, "/api/v1/admin/audit"), rid)
			if len(events) != 1 || events[0].Outcome != idflow.OutcomeDenied || !strings.Contains(events[0].Detail, "spoof") {
				t.Errorf("forged %s: audit events %+v; want one denied spoofing event", h.name, events)
			}
		}
		// Without a token too.
		checkProblem(t, s.Do(t, "GET", "/api/v1/facts", "", nil, header{"X-Authenticated-User", aliceID}), http.StatusUnauthorized)
	})
}

func otherName(who string) string {
	if who == callerAlice {
		return callerBob
	}
	return callerAlice
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// checkOwned requires every item of a list to belong to uid.
func checkOwned(t *testing.T, items []json.RawMessage, uid, path string) {
	t.Helper()
	for _, raw := range items {
		var o object
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatal(err)
		}
		if o.UserID != uid {
			t.Errorf("GET %s: item %s of user %q; want only %q", path, o.ID, o.UserID, uid)
		}
	}
}

// searchIDs runs a memory search as who and returns the fact ids found.
func searchIDs(t *testing.T, s *prodServer, who, query string) []string {
	t.Helper()
	r := s.As(t, who, "POST", "/api/v1/memory/search", map[string]any{"query": query, "limit": 50})
	mustStatus(t, r, http.StatusOK)
	var out struct {
		Items []idflow.ScoredFact `json:"items"`
	}
	r.JSON(t, &out)
	var ids []string
	for _, it := range out.Items {
		if it.Fact.UserID != s.UserID(t, who) {
			t.Errorf("%s's search returned a fact of %q: %+v", who, it.Fact.UserID, it.Fact)
		}
		ids = append(ids, it.Fact.ID)
	}
	return ids
}

func allFactIDs(t *testing.T, s *prodServer, who string) []string {
	t.Helper()
	return itemIDs(t, s.listAll(t, who, "/api/v1/facts"))
}

func TestCORS(t *testing.T) {
	t.Parallel()
	const allowed, disallowed = "https://app.idflow.test", "https://evil.example"
	s := startProdIdflow(t, map[string]string{"IDFLOW_CORS_ORIGINS": allowed + ", https://other.idflow.test"})
	id := s.create(t, callerAlice, "/api/v1/apps", map[string]any{"name": "cors app"})

	answers := []struct {
		name string
		do   func(origin string) reply
		want int
	}{
		{"200", func(o string) reply {
			return s.As(t, callerAlice, "GET", "/api/v1/apps/"+id, nil, header{"Origin", o})
		}, http.StatusOK},
		{"401", func(o string) reply { return s.Do(t, "GET", "/api/v1/apps", "", nil, header{"Origin", o}) }, http.StatusUnauthorized},
		{"404", func(o string) reply {
			return s.As(t, callerBob, "GET", "/api/v1/apps/"+id, nil, header{"Origin", o})
		}, http.StatusNotFound},
		{"400", func(o string) reply {
			return s.As(t, callerAlice, "POST", "/api/v1/apps", `{"name":`, header{"Origin", o})
		}, http.StatusBadRequest},
		{"405", func(o string) reply {
			return s.As(t, callerAlice, "PUT", "/api/v1/apps", `{}`, header{"Origin", o})
		}, http.StatusMethodNotAllowed},
	}
	for _, a := range answers {
		r := a.do(allowed)
		mustStatus(t, r, a.want)
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != allowed {
			t.Errorf("%s from an allowed origin: Access-Control-Allow-Origin %q; want %q", r, got, allowed)
		}
		if r.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("%s: Access-Control-Allow-Credentials %q", r, r.Header.Get("Access-Control-Allow-Credentials"))
		}
		if !slices.Contains(r.Header.Values("Vary"), "Origin") {
			t.Errorf("%s: Vary %q lacks Origin", r, r.Header.Values("Vary"))
		}
		if a.want == http.StatusUnauthorized && !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
			t.Errorf("%s: WWW-Authenticate is not exposed to the page", r)
		}
		r = a.do(disallowed)
		mustStatus(t, r, a.want)
		for name := range r.Header {
			if strings.HasPrefix(name, "Access-Control-") {
				t.Errorf("%s from a disallowed origin carries %s: %q", r, name, r.Header.Get(name))
			}
		}
	}

	preflight := func(origin string) reply {
		return s.Do(t, "OPTIONS", "/api/v1/apps/"+id, "", nil, header{"Origin", origin},
			header{"Access-Control-Request-Method", "PATCH"}, header{"Access-Control-Request-Headers", "authorization, content-type"})
	}
	r := preflight(allowed)
	mustStatus(t, r, http.StatusNoContent)
	if r.Header.Get("Access-Control-Allow-Origin") != allowed || !strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(strings.ToLower(r.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("preflight from an allowed origin: headers %v", r.Header)
	}
	r = preflight(disallowed)
	for name := range r.Header {
		if strings.HasPrefix(name, "Access-Control-") {
			t.Errorf("preflight from a disallowed origin carries %s: %q", name, r.Header.Get(name))
		}
	}
}
