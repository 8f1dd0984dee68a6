package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

// Bad input loses nothing: every refused write leaves every stored object
// exactly as it was, creates nothing, answers problem+json, never 500.

const (
	jsonBodyLimit   = 1 << 20  // httpapi.Config.MaxBodyBytes default
	uploadBodyLimit = 10 << 20 // httpapi.Config.MaxUploadBytes default
)

// textField is a text field of a write route and its limit (service/validate.go).
type textField struct {
	name     string
	max      int
	required bool // "" and blanks are refused
}

// writeRoute is one JSON write route with a body it accepts.
type writeRoute struct {
	method, path string
	valid        map[string]any
	texts        []textField
	wrongTypes   map[string]any // field → a value of the wrong JSON type
	extra        []badCase      // route-specific refusals
}

// badCase is one request that must be refused.
type badCase struct {
	name        string
	body        any
	contentType string
	status      int
	detail      string // the problem's detail must contain it (e.g. the field's name)
}

func withField(m map[string]any, k string, v any) map[string]any {
	out := maps.Clone(m)
	out[k] = v
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// genericCases are the refusals every JSON write route must give.
func genericCases(t *testing.T, wr writeRoute, limit int) []badCase {
	valid := mustJSON(t, wr.valid)
	cases := []badCase{
		{name: "empty body", body: "", status: 400},
		{name: "blank body", body: " \n\t ", status: 400},
		{name: "malformed", body: `{"`, status: 400},
		{name: "truncated", body: string(valid[:len(valid)-1]), status: 400},
		{name: "array", body: `[` + string(valid) + `]`, status: 400},
		{name: "string", body: `"` + string(valid) + `"`, status: 400},
		{name: "number", body: `42`, status: 400},
		{name: "null", body: `null`, status: 400},
		{name: "two objects", body: string(valid) + ` {}`, status: 400},
		{name: "unknown field", body: withField(wr.valid, "bogus_field", 1), status: 400, detail: "bogus_field"},
		{name: "misspelt field", body: withField(wr.valid, strings.ToUpper(firstKey(wr.valid))+"x", "v"), status: 400, detail: strings.ToUpper(firstKey(wr.valid)) + "x"},
		{name: "over the body limit", body: `{"` + firstKey(wr.valid) + `":"` + strings.Repeat("x", limit) + `"}`, status: 413},
	}
	for _, f := range slices.Sorted(maps.Keys(wr.wrongTypes)) {
		cases = append(cases, badCase{name: "wrong type " + f, body: withField(wr.valid, f, wr.wrongTypes[f]), status: 400, detail: f})
	}
	for _, f := range wr.texts {
		if f.required {
			cases = append(cases,
				badCase{name: "empty " + f.name, body: withField(wr.valid, f.name, ""), status: 400, detail: f.name},
				badCase{name: "blank " + f.name, body: withField(wr.valid, f.name, " \t\n "), status: 400, detail: f.name})
		}
		cases = append(cases,
			// é is two bytes: the limit counts characters.
			badCase{name: "oversized " + f.name, body: withField(wr.valid, f.name, strings.Repeat("é", f.max+1)), status: 400, detail: f.name},
			badCase{name: "NUL in " + f.name, body: withField(wr.valid, f.name, "a\x00b"), status: 400, detail: f.name})
	}
	return append(cases, wr.extra...)
}

func firstKey(m map[string]any) string { return slices.Sorted(maps.Keys(m))[0] }

// steps builds a workflow definition body.
func stepsBody(name string, steps ...map[string]any) map[string]any {
	s := make([]any, len(steps))
	for i, st := range steps {
		s[i] = st
	}
	return map[string]any{"name": name, "definition": map[string]any{"steps": s}}
}

func workflowCases() []badCase {
	prompt := map[string]any{"id": "a", "type": "prompt", "prompt": "hi"}
	many := make([]map[string]any, idflow.MaxSteps+1)
	for i := range many {
		many[i] = map[string]any{"id": fmt.Sprint("s", i), "type": "wait", "ms": 1}
	}
	return []badCase{
		{name: "unknown step type", body: stepsBody("w", map[string]any{"id": "a", "type": "teleport"}), status: 400, detail: "type"},
		{name: "duplicate step ids", body: stepsBody("w", prompt, prompt), status: 400, detail: `"a"`},
		{name: "too many steps", body: stepsBody("w", many...), status: 400, detail: fmt.Sprint(idflow.MaxSteps)},
		{name: "step without id", body: stepsBody("w", map[string]any{"type": "prompt", "prompt": "hi"}), status: 400, detail: "id"},
		{name: "step id too long", body: stepsBody("w", map[string]any{"id": strings.Repeat("i", 65), "type": "prompt", "prompt": "hi"}), status: 400, detail: "id"},
		{name: "prompt step without prompt", body: stepsBody("w", map[string]any{"id": "a", "type": "prompt"}), status: 400, detail: "prompt"},
		{name: "memory_search without query", body: stepsBody("w", map[string]any{"id": "a", "type": "memory_search"}), status: 400, detail: "query"},
		{name: "tool step without tool", body: stepsBody("w", map[string]any{"id": "a", "type": "tool"}), status: 400, detail: "tool"},
		{name: "negative wait", body: stepsBody("w", map[string]any{"id": "a", "type": "wait", "ms": -1}), status: 400, detail: "ms"},
		{name: "wait too long", body: stepsBody("w", map[string]any{"id": "a", "type": "wait", "ms": idflow.MaxStepWaitMs + 1}), status: 400, detail: "ms"},
		{name: "unknown step field", body: stepsBody("w", map[string]any{"id": "a", "type": "prompt", "prompt": "hi", "promt": "typo"}), status: 400, detail: "promt"},
		{name: "unknown definition field", body: map[string]any{"name": "w", "definition": map[string]any{"steps": []any{prompt}, "stepz": []any{}}}, status: 400, detail: "stepz"},
		{name: "steps not a list", body: map[string]any{"name": "w", "definition": map[string]any{"steps": map[string]any{}}}, status: 400, detail: "steps"},
		{name: "step not an object", body: map[string]any{"name": "w", "definition": map[string]any{"steps": []any{"prompt"}}}, status: 400},
		{name: "wait ms not a number", body: stepsBody("w", map[string]any{"id": "a", "type": "wait", "ms": "10"}), status: 400, detail: "ms"},
	}
}

// inputWorld is alice's stored objects that bad input must not touch.
type inputWorld struct {
	app, agent, session, workflow, document, fact string
}

// snapshot reads every stored object of alice (and bob) and every list
// of them: refused requests must change none of it.
func (w *inputWorld) snapshot(t *testing.T, s *prodServer) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range []string{
		"/api/v1/apps/" + w.app, "/api/v1/agents/" + w.agent, "/api/v1/sessions/" + w.session,
		"/api/v1/workflows/" + w.workflow, "/api/v1/documents/" + w.document, "/api/v1/documents/" + w.document + "/content",
		"/api/v1/facts/" + w.fact,
	} {
		r := s.As(t, callerAlice, "GET", p, nil)
		mustStatus(t, r, http.StatusOK)
		out[p] = string(r.Body)
	}
	for _, who := range []string{callerAlice, callerBob} {
		for _, p := range []string{"/api/v1/apps", "/api/v1/agents", "/api/v1/sessions", "/api/v1/sessions/" + w.session + "/messages",
			"/api/v1/workflows", "/api/v1/runs", "/api/v1/documents", "/api/v1/facts"} {
			if who == callerBob && strings.Contains(p, w.session) {
				continue
			}
			items := s.listAll(t, who, p)
			b, _ := json.Marshal(items)
			out[who+" "+p] = string(b)
		}
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if before[k] != after[k] {
			diffs = append(diffs, fmt.Sprintf("%s:\n  before %.300s\n  after  %.300s", k, before[k], after[k]))
		}
	}
	return diffs
}

func TestBadInputLosesNothing(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	w := &inputWorld{}
	w.app = s.create(t, callerAlice, "/api/v1/apps", map[string]any{"name": "kept app", "description": "must survive"})
	w.agent = s.create(t, callerAlice, "/api/v1/agents", map[string]any{"name": "kept agent", "instructions": "x", "tools": []string{"search_memory"}})
	w.session = s.create(t, callerAlice, "/api/v1/sessions", map[string]any{"title": "kept chat", "app_id": w.app})
	mustStatus(t, s.As(t, callerAlice, "POST", "/api/v1/sessions/"+w.session+"/messages", map[string]any{"content": "first"}), http.StatusCreated)
	w.workflow = s.create(t, callerAlice, "/api/v1/workflows", stepsBody("kept workflow", map[string]any{"id": "a", "type": "prompt", "prompt": "hi"}))
	w.document = s.create(t, callerAlice, "/api/v1/etl/ingest", map[string]any{"filename": "kept.txt", "content": "kept bytes"})
	w.fact = s.create(t, callerAlice, "/api/v1/facts", map[string]any{"content": "kept fact"})
	mustStatus(t, s.As(t, callerBob, "POST", "/api/v1/facts", map[string]any{"content": "bob's fact"}), http.StatusCreated)

	routes := []writeRoute{
		{method: "POST", path: "/api/v1/apps", valid: map[string]any{"name": "n", "description": "d"},
			texts:      []textField{{"name", idflow.MaxNameLen, true}, {"description", idflow.MaxDescriptionLen, false}},
			wrongTypes: map[string]any{"name": 123, "description": true}},
		{method: "PATCH", path: "/api/v1/apps/" + w.app, valid: map[string]any{"name": "n", "description": "d"},
			texts:      []textField{{"name", idflow.MaxNameLen, true}, {"description", idflow.MaxDescriptionLen, false}},
			wrongTypes: map[string]any{"name": []string{"n"}, "description": 1.5}},
		{method: "POST", path: "/api/v1/sessions", valid: map[string]any{"title": "t"},
			texts:      []textField{{"title", idflow.MaxNameLen, false}},
			wrongTypes: map[string]any{"title": 1, "app_id": 5, "agent_id": false}},
		{method: "PATCH", path: "/api/v1/sessions/" + w.session, valid: map[string]any{"title": "t"},
			texts:      []textField{{"title", idflow.MaxNameLen, true}},
			wrongTypes: map[string]any{"title": map[string]any{}, "app_id": 1}},
		{method: "POST", path: "/api/v1/sessions/" + w.session + "/messages", valid: map[string]any{"content": "c"},
			texts:      []textField{{"content", idflow.MaxMessageLen, true}},
			wrongTypes: map[string]any{"content": map[string]any{"text": "c"}}},
		{method: "POST", path: "/api/v1/agents", valid: map[string]any{"name": "n", "instructions": "i", "tools": []string{}},
			texts:      []textField{{"name", idflow.MaxNameLen, true}, {"instructions", idflow.MaxInstructionsLen, false}},
			wrongTypes: map[string]any{"name": 1, "tools": "search_memory", "model": 4},
			extra: []badCase{
				{name: "unknown model", body: map[string]any{"name": "n", "model": "gpt-imaginary"}, status: 400, detail: "model"},
				{name: "too many tools", body: map[string]any{"name": "n", "tools": slices.Repeat([]string{"t"}, idflow.MaxTools+1)}, status: 400, detail: "tools"},
				{name: "blank tool", body: map[string]any{"name": "n", "tools": []string{" "}}, status: 400, detail: "tools"},
				{name: "tool not a string", body: map[string]any{"name": "n", "tools": []any{1}}, status: 400, detail: "tools"},
			}},
		{method: "PATCH", path: "/api/v1/agents/" + w.agent, valid: map[string]any{"name": "n"},
			texts:      []textField{{"name", idflow.MaxNameLen, true}, {"instructions", idflow.MaxInstructionsLen, false}},
			wrongTypes: map[string]any{"tools": "x", "model": []string{}},
			extra: []badCase{
				{name: "unknown model", body: map[string]any{"model": "gpt-imaginary"}, status: 400, detail: "model"},
				{name: "too many tools", body: map[string]any{"tools": slices.Repeat([]string{"t"}, idflow.MaxTools+1)}, status: 400, detail: "tools"},
			}},
		{method: "POST", path: "/api/v1/workflows", valid: stepsBody("w", map[string]any{"id": "a", "type": "prompt", "prompt": "hi"}),
			texts:      []textField{{"name", idflow.MaxNameLen, true}},
			wrongTypes: map[string]any{"name": 1, "definition": "steps"},
			extra:      workflowCases()},
		{method: "PUT", path: "/api/v1/workflows/" + w.workflow, valid: stepsBody("w", map[string]any{"id": "a", "type": "prompt", "prompt": "hi"}),
			texts:      []textField{{"name", idflow.MaxNameLen, true}},
			wrongTypes: map[string]any{"name": false, "definition": []any{}},
			extra:      workflowCases()},
		{method: "POST", path: "/api/v1/workflows/" + w.workflow + "/runs", valid: map[string]any{"input": map[string]any{"x": 1}, "version": 0},
			wrongTypes: map[string]any{"version": "1"},
			extra: []badCase{
				{name: "negative version", body: map[string]any{"version": -1}, status: 400, detail: "version"},
				{name: "input over 64 KiB", body: map[string]any{"input": strings.Repeat("i", 65<<10)}, status: 400, detail: "input"},
			}},
		{method: "POST", path: "/api/v1/etl/ingest", valid: map[string]any{"filename": "f.txt", "content": "c"},
			texts:      []textField{{"filename", idflow.MaxFilenameLen, true}},
			wrongTypes: map[string]any{"content": 5, "filename": []string{"f"}, "app_id": 1},
			extra: []badCase{
				{name: "empty content", body: map[string]any{"filename": "f.txt", "content": ""}, status: 400, detail: "content"},
				{name: "filename of dots", body: map[string]any{"filename": "..", "content": "c"}, status: 400, detail: "filename"},
			}},
		{method: "POST", path: "/api/v1/facts", valid: map[string]any{"content": "c"},
			texts:      []textField{{"content", idflow.MaxFactLen, true}},
			wrongTypes: map[string]any{"content": []any{"c"}}},
		{method: "POST", path: "/api/v1/memory/search", valid: map[string]any{"query": "q", "limit": 5},
			texts:      []textField{{"query", idflow.MaxQueryLen, true}},
			wrongTypes: map[string]any{"query": 1, "limit": "5"},
			extra: []badCase{
				{name: "negative limit", body: map[string]any{"query": "q", "limit": -1}, status: 400, detail: "limit"},
				{name: "limit too large", body: map[string]any{"query": "q", "limit": 51}, status: 400, detail: "limit"},
				{name: "fractional limit", body: map[string]any{"query": "q", "limit": 1.5}, status: 400, detail: "limit"},
			}},
	}

	before := w.snapshot(t, s)
	check := func(t *testing.T, r reply, c badCase) {
		t.Helper()
		p := checkProblem(t, r, c.status)
		if c.detail != "" && !strings.Contains(p.Detail, c.detail) {
			t.Errorf("%s: detail %q does not name %q", r, p.Detail, c.detail)
		}
		if after := w.snapshot(t, s); !maps.Equal(before, after) {
			t.Errorf("%s changed stored data:\n%s", r, strings.Join(diffSnapshots(before, after), "\n"))
			before = after // report each change once
		}
	}

	for _, wr := range routes {
		limit := jsonBodyLimit
		if wr.path == "/api/v1/etl/ingest" {
			limit = uploadBodyLimit
		}
		t.Run(wr.method+" "+wr.path, func(t *testing.T) {
			for _, c := range genericCases(t, wr, limit) {
				t.Run(c.name, func(t *testing.T) {
					r := s.As(t, callerAlice, wr.method, wr.path, c.body)
					check(t, r, c)
				})
			}
		})
	}

	t.Run("multipart ingest", func(t *testing.T) {
		file := [3]string{"file", "notes.txt", "some notes"}
		body := func(parts ...[3]string) func(t *testing.T) ([]byte, string) {
			return func(t *testing.T) ([]byte, string) { return multipartBody(t, parts...) }
		}
		for _, c := range []struct {
			name   string
			build  func(t *testing.T) ([]byte, string)
			status int
			detail string
		}{
			{"no file part", body([3]string{"app_id", "", w.app}), 400, "file"},
			{"two files", body(file, file), 400, "one file"},
			{"unknown field", body(file, [3]string{"owner", "", "bob"}), 400, "owner"},
			{"user_id field", body(file, [3]string{"user_id", "", s.UserID(t, callerBob)}), 400, "user_id"},
			{"empty file", body([3]string{"file", "empty.txt", ""}), 400, "empty"},
			{"not UTF-8", body([3]string{"file", "bin.dat", "\xff\xfe\x00binary"}), 400, "UTF-8"},
			{"file without a name", body([3]string{"file", "", "x"}), 400, "filename"},
			{"no boundary", func(t *testing.T) ([]byte, string) {
				b, _ := multipartBody(t, file)
				return b, "multipart/form-data"
			}, 400, "boundary"},
			{"wrong boundary", func(t *testing.T) ([]byte, string) {
				b, _ := multipartBody(t, file)
				return b, "multipart/form-data; boundary=nope"
			}, 400, ""},
			{"truncated", func(t *testing.T) ([]byte, string) {
				b, ct := multipartBody(t, file)
				return b[:len(b)-10], ct
			}, 400, "multipart"},
			{"text/plain", func(t *testing.T) ([]byte, string) { return []byte("just text"), "text/plain" }, 415, "multipart"},
			{"over the upload limit", func(t *testing.T) ([]byte, string) {
				return multipartBody(t, [3]string{"file", "big.txt", strings.Repeat("x", uploadBodyLimit)})
			}, 413, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				b, ct := c.build(t)
				r := s.As(t, callerAlice, "POST", "/api/v1/etl/ingest", b, header{"Content-Type", ct})
				check(t, r, badCase{status: c.status, detail: c.detail})
			})
		}
	})

	t.Run("pagination", func(t *testing.T) {
		ops := fetchOps(t, s)
		r := s.As(t, callerAlice, "GET", "/openapi.json", nil)
		var doc struct {
			Paths map[string]map[string]struct {
				Parameters []struct{ Name, In string } `json:"parameters"`
			} `json:"paths"`
		}
		r.JSON(t, &doc)
		ids := map[string]string{"session_id": w.session, "user_id": "me"}
		paged := 0
		for _, op := range ops {
			if op.Method != "GET" {
				continue
			}
			hasLimit := false
			for _, p := range doc.Paths[op.Path][strings.ToLower(op.Method)].Parameters {
				hasLimit = hasLimit || (p.Name == "limit" && p.In == "query")
			}
			if !hasLimit {
				continue
			}
			paged++
			who := callerAlice
			if op.Access == "admin" {
				who = callerAdmin
			}
			path := fill(op.Path, func(p string) string {
				if ids[p] == "" {
					t.Fatalf("%s: no id for {%s}", op.key(), p)
				}
				return ids[p]
			})
			for _, q := range []string{"limit=0", "limit=-1", "limit=201", "limit=1000", "limit=x", "limit=1.5", "limit=",
				"cursor=" + strings.Repeat("c", 600), "cursor=!!!", "cursor=bm90LWEtY3Vyc29y", "limit=1&cursor=%00"} {
				if q == "limit=" {
					continue // an empty limit is the default
				}
				r := s.As(t, who, "GET", path+"?"+q, nil)
				checkProblem(t, r, http.StatusBadRequest)
			}
			// Valid pages work, and following next_cursor ends.
			r := s.As(t, who, "GET", path+"?limit=1", nil)
			mustStatus(t, r, http.StatusOK)
			var pg listPage
			r.JSON(t, &pg)
			if len(pg.Items) > 1 {
				t.Errorf("%s?limit=1: %d items", path, len(pg.Items))
			}
			if pg.NextCursor != "" {
				mustStatus(t, s.As(t, who, "GET", path+"?limit=1&cursor="+pg.NextCursor, nil), http.StatusOK)
			}
			mustStatus(t, s.As(t, who, "GET", path+"?limit=200", nil), http.StatusOK)
		}
		if paged < 10 {
			t.Fatalf("only %d paginated routes in /openapi.json", paged)
		}
		// The events of a run page by after_seq and their own limit.
		run := s.create(t, callerAlice, "/api/v1/workflows/"+w.workflow+"/runs", map[string]any{})
		s.waitRun(t, callerAlice, run)
		for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after_seq=-1", "after_seq=x", "after_seq=1.5"} {
			checkProblem(t, s.As(t, callerAlice, "GET", "/api/v1/runs/"+run+"/events?"+q, nil), http.StatusBadRequest)
		}
		before = w.snapshot(t, s) // the run above is a legitimate write
	})

	t.Run("wrong method", func(t *testing.T) {
		ops := fetchOps(t, s)
		byPath := map[string][]string{}
		for _, op := range ops {
			byPath[op.Path] = append(byPath[op.Path], op.Method)
		}
		for _, path := range slices.Sorted(maps.Keys(byPath)) {
			allowed := byPath[path]
			concrete := fill(path, func(p string) string {
				if p == "file" {
					return "app.js"
				}
				return "x_" + p
			})
			for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
				if slices.Contains(allowed, m) {
					continue
				}
				for _, who := range []string{callerAlice, callerNone} {
					r := s.As(t, who, m, concrete, `{}`)
					checkProblem(t, r, http.StatusMethodNotAllowed)
					got := strings.Split(r.Header.Get("Allow"), ", ")
					if !sameSet(got, allowed) {
						t.Errorf("%s: Allow %q; want exactly %v", r, r.Header.Get("Allow"), allowed)
					}
				}
			}
		}
		if after := w.snapshot(t, s); !maps.Equal(before, after) {
			t.Fatalf("wrong methods changed stored data:\n%s", strings.Join(diffSnapshots(before, after), "\n"))
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		for _, p := range []string{"/api/v1/nope", "/api/v2/apps", "/api/v1/apps/" + w.app + "/extra", "/internal/v1/nope",
			"/api/v1/users/me/facts/extra", "/api/v1", "/api/v1/apps/" + w.app + "/messages"} {
			for _, who := range []string{callerAlice, callerNone} {
				for _, m := range []string{"GET", "POST", "DELETE"} {
					checkProblem(t, s.As(t, who, m, p, `{}`), http.StatusNotFound)
				}
			}
		}
	})

	t.Run("accepted and ignored", func(t *testing.T) {
		aliceID, bobID := s.UserID(t, callerAlice), s.UserID(t, callerBob)
		forged := map[string]any{"id": "app_forgedforgedforgedforged", "user_id": bobID,
			"created_at": "2001-01-01T00:00:00Z", "updated_at": "2001-01-01T00:00:00Z"}
		with := func(m map[string]any) map[string]any {
			out := maps.Clone(m)
			maps.Copy(out, forged)
			return out
		}
		checkObj := func(r reply, want int) {
			t.Helper()
			mustStatus(t, r, want)
			var o struct {
				ID        string    `json:"id"`
				UserID    string    `json:"user_id"`
				CreatedAt time.Time `json:"created_at"`
			}
			r.JSON(t, &o)
			if o.ID == forged["id"] || o.UserID != aliceID || o.CreatedAt.Year() == 2001 {
				t.Errorf("%s: took a read-only field from the body (id %q, user_id %q, created_at %s)", r, o.ID, o.UserID, o.CreatedAt)
			}
		}
		app := s.create(t, callerAlice, "/api/v1/apps", map[string]any{"name": "scratch"})
		agent := s.create(t, callerAlice, "/api/v1/agents", map[string]any{"name": "scratch"})
		ses := s.create(t, callerAlice, "/api/v1/sessions", map[string]any{"title": "scratch"})
		wf := s.create(t, callerAlice, "/api/v1/workflows", stepsBody("scratch", map[string]any{"id": "a", "type": "wait", "ms": 1}))
		for _, c := range []struct {
			method, path string
			body         map[string]any
			want         int
		}{
			{"POST", "/api/v1/apps", map[string]any{"name": strings.Repeat("é", idflow.MaxNameLen)}, 201},
			{"PATCH", "/api/v1/apps/" + app, map[string]any{"description": strings.Repeat("d", idflow.MaxDescriptionLen)}, 200},
			{"POST", "/api/v1/agents", map[string]any{"name": "a", "tools": slices.Repeat([]string{"t"}, idflow.MaxTools)}, 201},
			{"PATCH", "/api/v1/agents/" + agent, map[string]any{"name": "renamed"}, 200},
			{"POST", "/api/v1/sessions", map[string]any{"title": ""}, 201},
			{"PATCH", "/api/v1/sessions/" + ses, map[string]any{"title": "renamed"}, 200},
			{"POST", "/api/v1/workflows", stepsBody("full", func() []map[string]any {
				s := make([]map[string]any, idflow.MaxSteps)
				for i := range s {
					s[i] = map[string]any{"id": fmt.Sprint("s", i), "type": "wait", "ms": 0}
				}
				return s
			}()...), 201},
			{"PUT", "/api/v1/workflows/" + wf, stepsBody("replaced", map[string]any{"id": "b", "type": "wait", "ms": 2}), 200},
			{"POST", "/api/v1/facts", map[string]any{"content": strings.Repeat("f", idflow.MaxFactLen)}, 201},
			// The ingest route's own limit: a JSON body well over 1 MiB.
			{"POST", "/api/v1/etl/ingest", map[string]any{"filename": "big.txt", "content": strings.Repeat("word ", 3*jsonBodyLimit/5)}, 201},
		} {
			checkObj(s.As(t, callerAlice, c.method, c.path, with(c.body)), c.want)
		}
		// Patched objects keep their owner and id.
		var a object
		s.As(t, callerAlice, "GET", "/api/v1/apps/"+app, nil).JSON(t, &a)
		if a.ID != app || a.UserID != aliceID {
			t.Errorf("after a PATCH with forged read-only fields: %+v", a)
		}
		// Bob's data did not gain anything named by the forged user_id.
		if after := s.listAll(t, callerBob, "/api/v1/apps"); len(after) != 0 {
			t.Errorf("bob has %d apps after alice's forged user_id bodies", len(after))
		}
	})
}

// TestErrorAnswersAreProblems: a sample of every kind of refusal answers
// application/problem+json with every member; keys are sorted so the
// output is stable.
func TestErrorAnswersAreProblems(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	app := s.create(t, callerAlice, "/api/v1/apps", map[string]any{"name": "a"})
	cases := map[string]struct {
		r    func() reply
		want int
	}{
		"400": {func() reply { return s.As(t, callerAlice, "POST", "/api/v1/apps", `{`) }, 400},
		"401": {func() reply { return s.Do(t, "GET", "/api/v1/apps", "", nil) }, 401},
		"401 bad scheme": {func() reply {
			return s.Do(t, "GET", "/api/v1/apps", "", nil, header{"Authorization", "Basic YWxpY2U6eA=="})
		}, 401},
		"401 garbage token": {func() reply { return s.Do(t, "GET", "/api/v1/apps", "not.a.jwt", nil) }, 401},
		"403":               {func() reply { return s.As(t, callerBob, "GET", "/api/v1/admin/users", nil) }, 403},
		"404":               {func() reply { return s.As(t, callerBob, "GET", "/api/v1/apps/"+app, nil) }, 404},
		"405":               {func() reply { return s.As(t, callerAlice, "PUT", "/api/v1/apps", `{}`) }, 405},
		"409": {func() reply {
			wf := s.create(t, callerAlice, "/api/v1/workflows", stepsBody("w", map[string]any{"id": "a", "type": "wait", "ms": 1}))
			run := s.create(t, callerAlice, "/api/v1/workflows/"+wf+"/runs", map[string]any{})
			s.waitRun(t, callerAlice, run)
			return s.As(t, callerAlice, "POST", "/api/v1/runs/"+run+"/cancel", nil)
		}, 409},
		"413": {func() reply {
			return s.As(t, callerAlice, "POST", "/api/v1/facts", bytes.Repeat([]byte(" "), jsonBodyLimit+1))
		}, 413},
	}
	keys := slices.Collect(maps.Keys(cases))
	sort.Strings(keys)
	for _, k := range keys {
		c := cases[k]
		p := checkProblem(t, c.r(), c.want)
		if !strings.HasPrefix(p.Type, "urn:idflow:problem:") {
			t.Errorf("%s: type %q", k, p.Type)
		}
		if p.Title != http.StatusText(c.want) {
			t.Errorf("%s: title %q; want %q", k, p.Title, http.StatusText(c.want))
		}
	}
}
