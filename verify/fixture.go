package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// fixture is what A owns for the run: one object of every kind, each named
// with word (which other callers search for) and holding secret (which no
// other caller ever sends, so finding it in their answers is a leak).
type fixture struct {
	word, secret   string
	cWord, cSecret string            // C's own fact, for the admin checks across tenants
	ids            map[string]string // kind (app, agent, session, …) → A's id
	labels         map[string]string // every id of A's and C's, and their user ids → what it is
	owners         map[string]string // the same ids → the caller they belong to
	docFacts       []string          // facts made from A's document
	cFact          string
	mcpSession     string // A's MCP session, which others try to use
	snaps          []snapshot
}

// snapshot is an answer of A's after setup, compared at the end.
type snapshot struct {
	label, path string
	body        []byte
	raw         bool // compare bytes, not JSON
}

// kinds are the object kinds A creates, as path parameters name them
// (`{app_id}`), in the order they are made.
var kinds = []string{"app", "agent", "session", "workflow", "run", "document", "fact"}

func newFixture(v *verifier) *fixture {
	fx := &fixture{word: randomWord("idfv"), secret: randomWord("sec"), cWord: randomWord("idfv"), cSecret: randomWord("sec"),
		ids: map[string]string{}, labels: map[string]string{}, owners: map[string]string{}}
	for _, c := range append([]*caller{v.a}, v.callers...) {
		if c.userID != "" && (c.role == roleOwner || c.role == roleUser || c.role == roleAdmin) {
			fx.label(c.userID, c.Name+"'s user id", c.Name)
		}
	}
	return fx
}

// kindOf is the kind of object a path parameter or body property names:
// `app_id` → app, `source_document_id` → document; "" for none.
func (fx *fixture) kindOf(name string) string {
	base, ok := strings.CutSuffix(name, "_id")
	if !ok {
		return ""
	}
	for _, k := range kinds {
		if base == k || strings.HasSuffix(base, "_"+k) {
			return k
		}
	}
	return ""
}

func (fx *fixture) add(kind, id string) {
	fx.ids[kind] = id
	fx.label(id, "A's "+kind, nameA)
}

// label records what an id is and whose.
func (fx *fixture) label(id, what, owner string) {
	fx.labels[id] = what
	fx.owners[id] = owner
}

// fixedParams are values of path parameters that name no object.
var fixedParams = map[string]string{"file": "app.js"}

// fill puts A's ids (random ones of the same shape, when random) into a
// path. ok is false when a parameter is of a kind the verifier cannot
// fill; dummy fills such parameters with a placeholder instead (for
// callers refused before any handler runs).
func (v *verifier) fill(path string, random, dummy bool) (string, bool) {
	ok := true
	out := paramRE.ReplaceAllStringFunc(path, func(m string) string {
		name := m[1 : len(m)-1]
		var val string
		switch {
		case name == "user_id":
			val = v.a.userID
		case v.fx.kindOf(name) != "" && v.fx.ids[v.fx.kindOf(name)] != "":
			val = v.fx.ids[v.fx.kindOf(name)]
		case fixedParams[name] != "":
			return fixedParams[name]
		case dummy:
			return "idflow-verify"
		default:
			ok = false
			return m
		}
		if random {
			val = randomLike(val)
		}
		return url.PathEscape(val)
	})
	return out, ok
}

// namesA reports whether a route's path names one of A's objects.
func (v *verifier) namesA(op operation) bool {
	for _, p := range op.Params {
		if p == "user_id" || v.fx.kindOf(p) != "" {
			return true
		}
	}
	return false
}

// randomLike returns a random value shaped like id: the same prefix (up to
// the first '_' or the last '.'), then each character replaced by a random
// one of its class, so that a server cannot tell the two apart by form.
func randomLike(id string) string {
	start := 0
	if i := strings.IndexByte(id, '_'); i >= 0 && i < len(id)-1 {
		start = i + 1
	}
	if i := strings.LastIndexByte(id, '.'); i >= start {
		start = i + 1
	}
	b := []byte(id)
	pick := func(set string) byte {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		return set[n.Int64()]
	}
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c >= '0' && c <= '9':
			b[i] = pick("0123456789")
		case c >= 'a' && c <= 'f':
			b[i] = pick("abcdef")
		case c >= 'A' && c <= 'F':
			b[i] = pick("ABCDEF")
		case c >= 'g' && c <= 'z':
			b[i] = pick("ghijklmnopqrstuvwxyz")
		case c >= 'G' && c <= 'Z':
			b[i] = pick("GHIJKLMNOPQRSTUVWXYZ")
		}
	}
	if string(b) == id {
		return randomLike(id) // astronomically unlikely; never answer A's own id
	}
	return string(b)
}

// object is the part of any stored object the verifier reads.
type object struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
}

// setupTasks create A's objects (and C's fact) and take the controls:
// A can read each of them, find the fact by its word, list them.
func (v *verifier) setupTasks() []task {
	fx := v.fx
	w, s := fx.word, fx.secret
	step := func(label string, fn func(ctx context.Context) error) task {
		return task{phase: "setup", label: label, run: func(ctx context.Context) {
			if err := fn(ctx); err != nil {
				v.aborted = true
				var ev []Exchange
				var es *errStatus
				if errors.As(err, &es) {
					ev = exchangeOf(es.r)
				}
				v.fail("controls", "setup: "+label, nameA, "succeeds", v.cl.red.String(err.Error()), ev,
					"Without A's objects nothing can be verified; the run stops here and removes what it made.")
			}
		}}
	}
	create := func(ctx context.Context, c *caller, kind, path string, want int, body any) (object, error) {
		var o object
		if _, err := v.cl.need(ctx, c, "create "+c.Name+"'s "+kind+" (POST "+path+")", want, &o, "POST", path, body); err != nil {
			return o, err
		}
		if o.ID == "" || o.UserID != c.userID {
			return o, fmt.Errorf("create %s's %s: the answer names id %q of user %q", c.Name, kind, o.ID, o.UserID)
		}
		return o, nil
	}
	a := v.a
	mk := func(kind, path string, want int, body func() any) task {
		return step("A's "+kind, func(ctx context.Context) error {
			o, err := create(ctx, a, kind, path, want, body())
			if err != nil {
				return err
			}
			fx.add(kind, o.ID)
			v.leftovers = append(v.leftovers, cleanup{c: a, what: "A's " + kind, path: deletePath(kind, o.ID)})
			return nil
		})
	}
	tasks := []task{
		mk("app", "/api/v1/apps", 201, func() any {
			return map[string]any{"name": "idflow verify " + w + " app", "description": "Made by idflow verify to prove isolation; removed when it ends. " + s}
		}),
		mk("agent", "/api/v1/agents", 201, func() any {
			return map[string]any{"name": "idflow verify " + w + " agent", "instructions": "Answer briefly. " + s, "tools": []string{}}
		}),
		mk("session", "/api/v1/sessions", 201, func() any {
			return map[string]any{"title": "idflow verify " + w + " chat " + s, "app_id": fx.ids["app"], "agent_id": fx.ids["agent"]}
		}),
		step("A's agent turn", func(ctx context.Context) error {
			var turn struct{ Message, Reply object }
			if _, err := v.cl.need(ctx, a, "A's agent turn", http.StatusCreated, &turn, "POST", "/api/v1/sessions/"+fx.ids["session"]+"/messages",
				map[string]any{"content": "Remember " + w + ": " + s}); err != nil {
				return err
			}
			fx.label(turn.Message.ID, "A's message", nameA)
			fx.label(turn.Reply.ID, "A's message (the reply)", nameA)
			return nil
		}),
		mk("workflow", "/api/v1/workflows", 201, func() any {
			return map[string]any{"name": "idflow verify " + w + " workflow " + s, "definition": map[string]any{"steps": []any{
				map[string]any{"id": "ask", "type": "prompt", "prompt": "Summarise " + w + " " + s},
			}}}
		}),
		step("A's run", func(ctx context.Context) error {
			o, err := create(ctx, a, "run", "/api/v1/workflows/"+fx.ids["workflow"]+"/runs", http.StatusAccepted,
				map[string]any{"input": map[string]any{"note": w + " " + s}})
			if err != nil {
				return err
			}
			fx.add("run", o.ID)
			return v.waitRun(ctx, o.ID)
		}),
		mk("document", "/api/v1/etl/ingest", 201, func() any {
			return map[string]any{"filename": "idflow-verify-" + w + "-" + s + ".txt", "app_id": fx.ids["app"],
				"content": "A document of idflow verify about " + w + ". " + s + "\n\nIts second paragraph, also about " + w + ": " + s + "."}
		}),
		mk("fact", "/api/v1/facts", 201, func() any {
			return map[string]any{"content": "idflow verify fact: " + w + " is " + s}
		}),
		step("C's fact", func(ctx context.Context) error {
			c := v.byName[nameC]
			o, err := create(ctx, c, "fact", "/api/v1/facts", http.StatusCreated, map[string]any{"content": "idflow verify fact of C: " + fx.cWord + " is " + fx.cSecret})
			if err != nil {
				return err
			}
			fx.cFact = o.ID
			fx.label(o.ID, "C's fact", nameC)
			v.leftovers = append(v.leftovers, cleanup{c: c, what: "C's fact", path: "/api/v1/facts/" + o.ID})
			return nil
		}),
		step("A's facts from the document", v.findDocFacts),
		step("A reads, finds and lists its own objects", v.controls),
	}
	return tasks
}

// deletePath is where an object of a kind is removed; runs cannot be.
func deletePath(kind, id string) string {
	switch kind {
	case "run":
		return ""
	case "document":
		return "/api/v1/documents/" + id
	}
	return "/api/v1/" + kind + "s/" + id
}

// waitRun polls A's run until it ends (two minutes at most).
func (v *verifier) waitRun(ctx context.Context, id string) error {
	deadline := v.cfg.now().Add(2 * time.Minute)
	pause := 50 * time.Millisecond
	for {
		var run struct {
			Status string `json:"status"`
		}
		if _, err := v.cl.need(ctx, v.a, "GET A's run", http.StatusOK, &run, "GET", "/api/v1/runs/"+id, nil); err != nil {
			return err
		}
		switch run.Status {
		case "succeeded", "failed", "cancelled":
			return nil
		}
		if v.cfg.now().After(deadline) {
			return fmt.Errorf("A's run %s is still %q after two minutes", id, run.Status)
		}
		if err := sleepCtx(ctx, pause); err != nil {
			return err
		}
		pause = min(2*pause, time.Second)
	}
}

// listAll pages through a list as c (at most 20 pages of 200).
func (v *verifier) listAll(ctx context.Context, c *caller, path string) ([]json.RawMessage, []*response, error) {
	var items []json.RawMessage
	var pages []*response
	cursor := ""
	for range 20 {
		p := path + sep(path) + "limit=200"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor string            `json:"next_cursor"`
		}
		r, err := v.cl.need(ctx, c, "GET "+path+" as "+c.Name, http.StatusOK, &page, "GET", p, nil)
		if r != nil {
			pages = append(pages, r)
		}
		if err != nil {
			return items, pages, err
		}
		items = append(items, page.Items...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	return items, pages, nil
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// findDocFacts records the facts A's document became.
func (v *verifier) findDocFacts(ctx context.Context) error {
	items, _, err := v.listAll(ctx, v.a, "/api/v1/facts")
	if err != nil {
		return err
	}
	for _, raw := range items {
		var f struct {
			ID               string `json:"id"`
			SourceDocumentID string `json:"source_document_id"`
		}
		if json.Unmarshal(raw, &f) == nil && f.SourceDocumentID == v.fx.ids["document"] && f.ID != "" {
			v.fx.docFacts = append(v.fx.docFacts, f.ID)
			v.fx.label(f.ID, "A's fact (from the document)", nameA)
		}
	}
	return nil
}

// snapshotPaths are A's answers compared at the end.
func (v *verifier) snapshotPaths() []snapshot {
	ids := v.fx.ids
	out := []snapshot{
		{label: "A's app", path: "/api/v1/apps/" + ids["app"]},
		{label: "A's agent", path: "/api/v1/agents/" + ids["agent"]},
		{label: "A's session", path: "/api/v1/sessions/" + ids["session"]},
		{label: "A's messages", path: "/api/v1/sessions/" + ids["session"] + "/messages?limit=200"},
		{label: "A's workflow", path: "/api/v1/workflows/" + ids["workflow"]},
		{label: "A's run", path: "/api/v1/runs/" + ids["run"]},
		{label: "A's run events", path: "/api/v1/runs/" + ids["run"] + "/events"},
		{label: "A's document", path: "/api/v1/documents/" + ids["document"]},
		{label: "A's document content", path: "/api/v1/documents/" + ids["document"] + "/content", raw: true},
		{label: "A's fact", path: "/api/v1/facts/" + ids["fact"]},
	}
	for _, id := range v.fx.docFacts {
		out = append(out, snapshot{label: "A's fact (from the document)", path: "/api/v1/facts/" + id})
	}
	return out
}

// controls prove the checks can fail: A reads each object (and keeps the
// answer for the end), finds its fact by the word others search for, and
// sees its objects in its lists. A check that cannot see A's data when it
// should would make every "nothing leaked" meaningless.
func (v *verifier) controls(ctx context.Context) error {
	fx := v.fx
	for _, sn := range v.snapshotPaths() {
		r, err := v.cl.need(ctx, v.a, "A reads "+sn.label, http.StatusOK, nil, "GET", sn.path, nil)
		if err != nil {
			return err
		}
		sn.body = r.body
		if !strings.Contains(string(r.body), fx.secret) && sn.label != "A's run events" {
			// Every object holds the secret word (a run's events hold
			// what its model answered, which may not repeat it).
			v.fail("controls", "A reads "+sn.label, nameA, "the answer holds A's secret word", "it does not", []Exchange{r.ex})
		}
		fx.snaps = append(fx.snaps, sn)
	}
	var found struct {
		Items []struct {
			Fact object `json:"fact"`
		} `json:"items"`
	}
	r, err := v.cl.need(ctx, v.a, "A searches its memory", http.StatusOK, &found, "POST", "/api/v1/memory/search", map[string]any{"query": fx.word, "limit": 50})
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(found.Items, func(i struct {
		Fact object `json:"fact"`
	}) bool {
		return i.Fact.ID == fx.ids["fact"]
	}) {
		v.fail("controls", "POST /api/v1/memory/search", nameA, "A finds its own fact by the word "+fx.word,
			"it does not: the memory checks of other callers prove nothing", []Exchange{r.ex})
	} else {
		v.pass("controls", "POST /api/v1/memory/search", nameA, "A finds its own fact by the word "+fx.word, "found")
	}
	for _, kind := range kinds {
		path := "/api/v1/" + kind + "s"
		items, pages, err := v.listAll(ctx, v.a, path)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(items, func(raw json.RawMessage) bool { return bytes.Contains(raw, []byte(`"`+fx.ids[kind]+`"`)) }) {
			v.fail("controls", "GET "+path, nameA, "A's list holds A's "+kind, "it does not", exchangesOf(pages))
		} else {
			v.pass("controls", "GET "+path, nameA, "A's list holds A's "+kind, "listed")
		}
	}
	return nil
}

func exchangesOf(rs []*response) []Exchange {
	var out []Exchange
	for _, r := range rs {
		out = append(out, r.ex)
	}
	return out
}

// intact compares A's objects with the answers kept after setup: nothing
// another caller did may have changed them.
func (v *verifier) intact(ctx context.Context) {
	for _, sn := range v.fx.snaps {
		target := sn.label + " (GET " + strings.SplitN(sn.path, "?", 2)[0] + ")"
		r, err := v.cl.do(ctx, v.a, "GET", sn.path, nil)
		switch {
		case err != nil:
			v.fail("intact", target, nameA, "unchanged", v.cl.red.String(err.Error()), exchangeOf(r))
		case r.status != http.StatusOK:
			v.fail("intact", target, nameA, "200, unchanged", r.String()+": A's object is gone", []Exchange{r.ex},
				"Another caller's request removed or hid it (see the failed checks above).")
		case !sameContent(sn.body, r.body, sn.raw):
			before := r.ex
			before.ResponseBody = v.cl.shown(sn.body)
			before.Caller = nameA + " (after setup)"
			v.fail("intact", target, nameA, "unchanged", "changed", []Exchange{before, r.ex},
				"Another caller's request changed A's object (see the failed checks above).")
		default:
			v.pass("intact", target, nameA, "unchanged", "unchanged")
		}
	}
}

// sameContent compares two answers: bytes, or JSON values.
func sameContent(a, b []byte, raw bool) bool {
	if raw {
		return bytes.Equal(a, b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

// cleanup is an object to remove at the end, as its owner.
type cleanup struct {
	c          *caller
	what, path string // path "" cannot be removed
}

// cleanup removes everything the run made, newest first: probe objects,
// MCP sessions, then A's and C's objects.
func (v *verifier) cleanup(ctx context.Context) {
	for _, s := range v.mcpSessions {
		if r, err := v.cl.do(ctx, s.c, "DELETE", "/mcp", nil, header{"Mcp-Session-Id", s.id}); err != nil || r.status >= 300 && r.status != http.StatusNotFound {
			v.note(fmt.Sprintf("Could not end %s's MCP session: %v", s.c.Name, errOr(err, r)))
		}
	}
	var left []string
	for i := len(v.leftovers) - 1; i >= 0; i-- {
		o := v.leftovers[i]
		if o.path == "" {
			left = append(left, o.what)
			continue
		}
		r, err := v.cl.do(ctx, o.c, "DELETE", o.path, nil)
		if err != nil || (r.status >= 300 && r.status != http.StatusNotFound) {
			left = append(left, fmt.Sprintf("%s (DELETE %s: %v)", o.what, o.path, errOr(err, r)))
		}
	}
	if v.fx != nil && v.fx.ids["run"] != "" {
		v.note("Runs cannot be deleted through the API: A's run " + v.fx.ids["run"] + " (its input holds the word " + v.fx.word +
			") stays, as do the audit events and model usage of the run. Everything else the verifier made was removed.")
	}
	if len(left) > 0 {
		v.note("Not removed: " + strings.Join(left, "; ") + ".")
	}
}

func errOr(err error, r *response) string {
	if err != nil {
		return err.Error()
	}
	return r.String()
}
