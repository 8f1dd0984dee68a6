package tools_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/authz"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/events"
	"github.com/idflow/idflow/files"
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/runner"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/sqlite"
	"github.com/idflow/idflow/tools"
)

var (
	alice = authtest.User("alice", "t-one")
	bob   = authtest.User("bob", "t-one")
	sales = authtest.User("sam", "t-one", "sales") // holds the role the test policies name
)

// builtins are the built-in tools of a catalog with runs, downstream and connections.
var builtins = []string{"add_fact", "disconnect", "downstream_get", "get_run", "ingest_document", "list_connections",
	"list_sessions", "search_memory", "send_message", "start_workflow", "whoami"}

// source is a tools.Source of test tools; each records its calls.
type source struct {
	mu    sync.Mutex
	tools []tools.Tool
	calls []call
	err   error         // answered by Tools instead of the tools
	block chan struct{} // Tools waits on it (or the context) when not nil
}

type call struct {
	user string
	args string
}

func (s *source) add(name string, run func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tools = append(s.tools, tools.Tool{
		ToolSpec: idflow.ToolSpec{Name: name, Description: "test tool " + name, Parameters: json.RawMessage(`{"type":"object"}`)},
		Run: func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error) {
			s.mu.Lock()
			s.calls = append(s.calls, call{p.UserID, string(args)})
			s.mu.Unlock()
			if run == nil {
				return map[string]string{"ran_as": p.UserID}, nil
			}
			return run(ctx, p, args)
		}})
}

func (s *source) Tools(ctx context.Context, _ idflow.Principal) ([]tools.Tool, error) {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tools), s.err
}

func (s *source) calledWith() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// downstream is an idflow.Downstream (and tools.Connections) that records
// whom it acts for. connected holds "user/provider" of live connections.
type downstream struct {
	mu        sync.Mutex
	users     []string
	connected map[string]bool
}

func (d *downstream) Disconnect(_ context.Context, p idflow.Principal, provider string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users = append(d.users, p.UserID)
	if !d.connected[p.UserID+"/"+provider] {
		return idflow.NotFound("connection")
	}
	delete(d.connected, p.UserID+"/"+provider)
	return nil
}

func (d *downstream) ListConnections(context.Context, idflow.Principal) ([]idflow.Connection, error) {
	return nil, nil
}

func (d *downstream) Do(_ context.Context, p idflow.Principal, provider string, req *http.Request) (*http.Response, error) {
	d.mu.Lock()
	d.users = append(d.users, p.UserID)
	d.mu.Unlock()
	status := http.StatusOK
	if req.URL.Path == "/down" {
		status = http.StatusBadGateway
	}
	body := fmt.Sprintf(`{"provider":%q,"path":%q,"user":%q}`, provider, req.URL.Path, p.UserID)
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body))}, nil
}

// rig is a catalog over a real SQLite store, with a runner (River on the
// same database, not started: runs are recorded, not executed).
type rig struct {
	db      *sqlite.DB
	svc     *service.Service
	catalog *tools.Catalog
	src     *source
	down    *downstream
}

// startRuns lets the catalog reach the runner built after it.
type startRuns struct{ tools.Runs }

func newRig(t testing.TB, policy string, cfg tools.Config, extra ...tools.Source) *rig {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := files.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pol, err := authz.Parse([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(service.Config{}, service.Deps{Store: db, Blobs: blobs, Cache: cache.NewScoped(cache.NewMemory(1000), time.Minute),
		Model: llm.Echo{}, Policy: pol})
	r := &rig{db: db, svc: svc, src: &source{}, down: &downstream{}}
	runs := &startRuns{}
	r.catalog, err = tools.New(cfg, tools.Deps{Svc: svc, Runs: runs, Downstream: r.down, Connections: r.down, Sources: append([]tools.Source{r.src}, extra...)})
	if err != nil {
		t.Fatal(err)
	}
	migrator, err := rivermigrate.New(riversqlite.New(db.SQL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	ex := runner.NewExecutor(svc, db, events.NewMemory(0), r.catalog, nil)
	ws := river.NewWorkers()
	runner.Register(ws, ex, db, runner.Config{})
	client, err := river.NewClient(riversqlite.New(db.SQL()), &river.Config{Workers: ws, TestOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	runs.Runs = runner.New[*sql.Tx](runner.Config{}, db, ex, client)
	return r
}

func (r *rig) call(p idflow.Principal, name, args string, offered ...string) idflow.ToolResult {
	return r.callCtx(context.Background(), p, name, args, offered)
}

func (r *rig) callCtx(ctx context.Context, p idflow.Principal, name, args string, offered []string) idflow.ToolResult {
	var raw json.RawMessage
	if args != "" {
		raw = json.RawMessage(args)
	}
	return r.catalog.CallTool(ctx, p, idflow.ToolCall{ID: "call_1", Name: name, Arguments: raw}, offered)
}

// ok calls a tool that must succeed and decodes its result into v.
func (r *rig) ok(t *testing.T, p idflow.Principal, name, args string, v any) {
	t.Helper()
	res := r.call(p, name, args)
	if !res.OK || res.Err != nil {
		t.Fatalf("%s(%s) as %s: %s", name, args, p.UserID, res.Content)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(res.Content), v); err != nil {
			t.Fatalf("%s: %v: %s", name, err, res.Content)
		}
	}
}

// refused checks a result is an error of code.
func refused(t *testing.T, res idflow.ToolResult, code string) {
	t.Helper()
	if res.OK || idflow.ErrorCode(res.Err) != code || !strings.HasPrefix(res.Content, code+": ") {
		t.Fatalf("result %+v; want a %s error", res, code)
	}
}

func (r *rig) audit(t *testing.T, p idflow.Principal) []idflow.AuditEvent {
	t.Helper()
	l, err := r.svc.ListAudit(context.Background(), p, idflow.Page{Limit: idflow.MaxPageLimit})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// audited reports whether events hold a tool.call of outcome whose resource
// is resource and whose detail contains detail.
func audited(events []idflow.AuditEvent, outcome, resource, detail string) bool {
	return slices.ContainsFunc(events, func(e idflow.AuditEvent) bool {
		return e.Action == tools.ActionCall && e.Outcome == outcome && e.Resource == resource && strings.Contains(e.Detail, detail)
	})
}

func names(specs []idflow.ToolSpec) []string {
	out := []string{}
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

func TestToolsForListsWhatTheCallerMayUse(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	r.src.add("tickets__search", nil)
	specs, err := r.catalog.ToolsFor(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(builtins), "tickets__search")
	slices.Sort(want)
	if got := names(specs); !slices.Equal(got, want) {
		t.Fatalf("ToolsFor(alice) = %v; want %v", got, want)
	}
	for _, s := range specs {
		if s.Description == "" || len(s.Parameters) == 0 {
			t.Errorf("%s has no description or schema", s.Name)
		}
	}
	// An app-only caller acts for nobody: no tools, and no call runs.
	if _, err := r.catalog.ToolsFor(context.Background(), authtest.App("svc")); err == nil {
		t.Fatal("an app-only Principal was offered tools")
	}
	if res := r.call(authtest.App("svc"), "tickets__search", `{}`); res.OK || len(r.src.calledWith()) != 0 {
		t.Fatalf("an app-only Principal ran a tool: %+v", res)
	}

	// Without runs, downstream or connections, start_workflow, downstream_get and disconnect are not offered.
	bare, err := tools.New(tools.Config{}, tools.Deps{Svc: r.svc})
	if err != nil {
		t.Fatal(err)
	}
	specs, _ = bare.ToolsFor(context.Background(), alice)
	if got := names(specs); slices.Contains(got, "start_workflow") || slices.Contains(got, "downstream_get") ||
		slices.Contains(got, "disconnect") || len(got) != len(builtins)-3 {
		t.Fatalf("a catalog without runs and downstream offers %v", got)
	}
	refused(t, bare.CallTool(context.Background(), alice, idflow.ToolCall{Name: "downstream_get", Arguments: json.RawMessage(`{"provider":"p","path":"/x"}`)}, nil), idflow.EINVALID)
	refused(t, bare.CallTool(context.Background(), alice, idflow.ToolCall{Name: "disconnect", Arguments: json.RawMessage(`{"provider":"p"}`)}, nil), idflow.EINVALID)
}

// metaSchema is the JSON Schema 2020-12 meta-schema, from the files the
// jsonschema-go module ships.
func metaSchema(t *testing.T) *jsonschema.Resolved {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/jsonschema-go").Output()
	if err != nil {
		t.Fatalf("locating jsonschema-go: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "jsonschema", "meta-schemas", "draft2020-12")
	load := func(name string) (*jsonschema.Schema, error) {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)+".json"))
		if err != nil {
			return nil, err
		}
		var s jsonschema.Schema
		return &s, json.Unmarshal(b, &s)
	}
	root, err := load("schema")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := root.Resolve(&jsonschema.ResolveOptions{Loader: func(u *url.URL) (*jsonschema.Schema, error) {
		name, ok := strings.CutPrefix(u.String(), "https://json-schema.org/draft/2020-12/")
		if !ok {
			return nil, fmt.Errorf("no local copy of %s", u)
		}
		return load(name)
	}})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestBuiltinSchemasAreValidJSONSchema: every built-in's parameters are a
// JSON Schema 2020-12 (checked against the meta-schema), of type object,
// without keywords the validator does not know, and they accept valid
// arguments and refuse invalid ones before the tool runs.
func TestBuiltinSchemasAreValidJSONSchema(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	meta := metaSchema(t)
	bogus := map[string]any{"type": "object", "properties": map[string]any{"n": map[string]any{"type": "integr"}}}
	if err := meta.Validate(bogus); err == nil {
		t.Fatal("the meta-schema accepts a bogus schema: the check below would prove nothing")
	}
	specs, err := r.catalog.ToolsFor(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		var doc map[string]any
		if err := json.Unmarshal(s.Parameters, &doc); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if err := meta.Validate(doc); err != nil {
			t.Errorf("%s: not a valid JSON Schema: %v", s.Name, err)
		}
		var schema jsonschema.Schema
		if err := json.Unmarshal(s.Parameters, &schema); err != nil || schema.Type != "object" || len(schema.Extra) != 0 {
			t.Errorf("%s: %v, type %q, unknown keywords %v", s.Name, err, schema.Type, schema.Extra)
		}
		if _, err := schema.Resolve(nil); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	for _, c := range []struct{ tool, args, want string }{
		{"search_memory", `{}`, "query"},
		{"search_memory", `{"query":"x","limit":500}`, "limit"},
		{"search_memory", `{"query":"x","limit":2.5}`, "limit"},
		{"search_memory", `{"query":7}`, "query"},
		{"add_fact", `{"content":["x"]}`, "content"},
		{"get_run", `{"run_id":{"$ne":""}}`, "run_id"},
	} {
		res := r.call(alice, c.tool, c.args)
		refused(t, res, idflow.EINVALID)
		if !strings.Contains(res.Content, c.want) {
			t.Errorf("%s(%s): %q does not name %s", c.tool, c.args, res.Content, c.want)
		}
	}
	// null is an absent optional argument.
	var found struct{ Items []idflow.ScoredFact }
	r.ok(t, alice, "search_memory", `{"query":"x","limit":null}`, &found)
}

// TestIdentityArgumentsAreRemovedAndAudited: whatever argument names
// another user — any of the six names, in any case or spelling, at any
// depth — the tool runs as the caller, never sees the argument, and each
// removal is audited as a denial.
func TestIdentityArgumentsAreRemovedAndAudited(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	r.src.add("probe", nil)
	for _, key := range []string{"user_id", "USER_ID", "userId", "owner", "Owner", "owner_id", "OwnerID", "as_user", "AsUser",
		"on_behalf_of", "onBehalfOf", "On-Behalf-Of", "impersonate", "IMPERSONATE", "aſ_uſer"} {
		args := fmt.Sprintf(`{"q":1,%q:"bob","filter":{%q:"bob","keep":true},"list":[{%q:{"user_id":"bob"}}]}`, key, key, key)
		before := len(r.src.calledWith())
		res := r.call(alice, "probe", args)
		if !res.OK || res.Content != `{"ran_as":"alice"}` {
			t.Fatalf("probe with %s=bob: %+v", key, res)
		}
		got := r.src.calledWith()[before]
		if got.user != "alice" || got.args != `{"filter":{"keep":true},"list":[{}],"q":1}` {
			t.Fatalf("probe with %s=bob ran as %s with %s", key, got.user, got.args)
		}
		events := r.audit(t, alice)
		for _, path := range []string{key, "filter/" + key, "list/0/" + key} {
			if !audited(events, idflow.OutcomeDenied, "tool/probe/argument/"+path, "tools act as the caller") {
				t.Fatalf("the removal of %s was not audited: %+v", path, events[:3])
			}
		}
	}
	// A built-in: the fact is alice's, bob has none.
	var fact idflow.Fact
	r.ok(t, alice, "add_fact", `{"content":"alice's fact","user_id":"bob","Owner":"bob","email":"bob@t-one.example","tenant_id":"t-two"}`, &fact)
	if fact.UserID != "alice" {
		t.Fatalf("add_fact naming bob stored %+v", fact)
	}
	bobs, err := r.svc.ListFacts(context.Background(), bob, idflow.Page{})
	if err != nil || len(bobs.Items) != 0 {
		t.Fatalf("bob's facts: %+v, %v", bobs.Items, err)
	}
	events := r.audit(t, alice)
	for _, k := range []string{"user_id", "Owner", "email", "tenant_id"} {
		if !audited(events, idflow.OutcomeDenied, "tool/add_fact/argument/"+k, "") {
			t.Errorf("the removal of add_fact's %s was not audited", k)
		}
	}
	// Many identity arguments: eight audited one by one, then one event for the rest.
	var many strings.Builder
	many.WriteString(`{"list":[`)
	for i := range 50 {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`{"owner":"bob"}`)
	}
	many.WriteString(`]}`)
	r.src.add("many", nil)
	r.ok(t, alice, "many", many.String(), nil)
	n := 0
	for _, e := range r.audit(t, alice) {
		if strings.HasPrefix(e.Resource, "tool/many/argument/list/") {
			n++
		}
	}
	if n != 8 || !audited(r.audit(t, alice), idflow.OutcomeDenied, "tool/many/argument/…", "42 more") {
		t.Fatalf("%d removals audited one by one; want 8 and one for the 42 others", n)
	}
}

// TestToolNotOfferedIsNeverRun: a call of a tool that was not offered is
// refused and audited, and the tool never runs.
func TestToolNotOfferedIsNeverRun(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	r.src.add("probe", nil)
	refused(t, r.call(alice, "probe", `{}`, "whoami"), idflow.EFORBIDDEN)
	refused(t, r.callCtx(context.Background(), alice, "probe", `{}`, []string{}), idflow.EFORBIDDEN)
	refused(t, r.call(alice, "add_fact", `{"content":"x"}`, "whoami", "probe"), idflow.EFORBIDDEN)
	if calls := r.src.calledWith(); len(calls) != 0 {
		t.Fatalf("a tool that was not offered ran: %+v", calls)
	}
	if facts, _ := r.svc.ListFacts(context.Background(), alice, idflow.Page{}); len(facts.Items) != 0 {
		t.Fatalf("add_fact, not offered, stored %+v", facts.Items)
	}
	if !audited(r.audit(t, alice), idflow.OutcomeDenied, "tool/probe", "not offered") {
		t.Fatal("the refusal was not audited")
	}
	if res := r.call(alice, "probe", `{}`, "whoami", "probe"); !res.OK {
		t.Fatalf("an offered tool was refused: %+v", res)
	}
}

func TestUnknownTools(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	for _, name := range []string{"nope", "", "bad name", strings.Repeat("x", 65), "who\x00ami", "../whoami"} {
		refused(t, r.call(alice, name, `{}`), idflow.EINVALID)
	}
	if !audited(r.audit(t, alice), idflow.OutcomeFailure, "tool/?", "unknown tool") {
		t.Fatal("a call of an invalid name was not audited")
	}
}

// TestPolicyGatesTools: tool.<name> and its alias mcp.tool.<name> close a
// tool to whoever the rule does not name: not offered, refused if called
// anyway (never run), audited; the holder of the role may use it.
func TestPolicyGatesTools(t *testing.T) {
	r := newRig(t, `{"features": {"tool.probe": {"roles": ["sales"]}, "mcp.tool.add_fact": {"roles": ["sales"]}}}`, tools.Config{})
	r.src.add("probe", nil)
	specs, err := r.catalog.ToolsFor(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(specs); slices.Contains(got, "probe") || slices.Contains(got, "add_fact") || !slices.Contains(got, "whoami") {
		t.Fatalf("alice is offered %v", got)
	}
	res := r.call(alice, "probe", `{}`)
	refused(t, res, idflow.EFORBIDDEN)
	if !strings.Contains(res.Content, "tool.probe") {
		t.Fatalf("the refusal %q does not name the feature", res.Content)
	}
	res = r.call(alice, "add_fact", `{"content":"x"}`)
	refused(t, res, idflow.EFORBIDDEN)
	if !strings.Contains(res.Content, "mcp.tool.add_fact") {
		t.Fatalf("the refusal %q does not name the feature", res.Content)
	}
	if len(r.src.calledWith()) != 0 {
		t.Fatal("a tool the policy closes ran")
	}
	if facts, _ := r.svc.ListFacts(context.Background(), alice, idflow.Page{}); len(facts.Items) != 0 {
		t.Fatalf("a refused add_fact stored %+v", facts.Items)
	}
	if events := r.audit(t, alice); !audited(events, idflow.OutcomeDenied, "tool/probe", "forbidden") || !audited(events, idflow.OutcomeDenied, "tool/add_fact", "forbidden") {
		t.Fatal("the refusals were not audited")
	}
	specs, _ = r.catalog.ToolsFor(context.Background(), sales)
	if got := names(specs); !slices.Contains(got, "probe") || !slices.Contains(got, "add_fact") {
		t.Fatalf("the sales role is offered %v", got)
	}
	r.ok(t, sales, "probe", `{}`, nil)
	r.ok(t, sales, "add_fact", `{"content":"x"}`, nil)
}

func TestArgumentAndResultBounds(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{MaxArgumentBytes: 4 << 10, MaxResultBytes: 2 << 10})
	r.src.add("probe", nil)
	r.src.add("big", func(context.Context, idflow.Principal, json.RawMessage) (any, error) {
		return map[string]string{"body": strings.Repeat("ab<>", 10<<10)}, nil
	})
	big := `{"x":"` + strings.Repeat("y", 5<<10) + `"}`
	refused(t, r.call(alice, "probe", big), idflow.ETOOLARGE)
	// Invalid JSON from a model is a tool error it can read, never a panic.
	for _, args := range []string{`{`, `{"a":}`, `[1,2]`, `"text"`, `{"a":1}{"b":2}`, "{\"a\":\"\xff\"}"} {
		res := r.call(alice, "probe", args)
		refused(t, res, idflow.EINVALID)
		if !strings.Contains(res.Content, "arguments") {
			t.Fatalf("the error %q does not say what is wrong", res.Content)
		}
	}
	if n := len(r.src.calledWith()); n != 0 {
		t.Fatalf("the tool ran %d times with arguments it should not get", n)
	}
	// ingest_document takes a document larger than the bound of others.
	var doc idflow.Document
	r.ok(t, alice, "ingest_document", `{"filename":"a.txt","content":"`+strings.Repeat("word ", 2<<10)+`"}`, &doc)
	if doc.UserID != "alice" {
		t.Fatalf("ingest_document: %+v", doc)
	}

	res := r.call(alice, "big", `{}`)
	var out struct {
		Truncated bool   `json:"truncated"`
		Bytes     int    `json:"bytes"`
		Head      string `json:"head"`
	}
	if !res.OK || len(res.Content) > 2<<10 || json.Unmarshal([]byte(res.Content), &out) != nil || !out.Truncated ||
		out.Bytes <= 40<<10 || !strings.HasPrefix(out.Head, `{"body":"ab<>ab<>`) {
		t.Fatalf("a 40 KiB result: %d bytes, %.120s", len(res.Content), res.Content)
	}
	if !audited(r.audit(t, alice), idflow.OutcomeSuccess, "tool/big", "result_truncated_from_bytes=") {
		t.Fatal("the truncation was not audited")
	}
}

// TestToolsCannotCallTools: a tool that calls the catalog (as send_message
// will run an agent turn with tools) is refused, so nothing recurses.
func TestToolsCannotCallTools(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	var inner idflow.ToolResult
	var inCall bool
	r.src.add("relay", func(ctx context.Context, p idflow.Principal, _ json.RawMessage) (any, error) {
		inCall = idflow.InToolCall(ctx)
		inner = r.catalog.CallTool(ctx, p, idflow.ToolCall{Name: "send_message", Arguments: json.RawMessage(`{"content":"again"}`)}, nil)
		return inner, nil
	})
	r.ok(t, alice, "relay", `{}`, nil)
	if !inCall {
		t.Fatal("InToolCall is false inside a tool")
	}
	refused(t, inner, idflow.EFORBIDDEN)
	if sessions, _ := r.svc.ListSessions(context.Background(), alice, idflow.SessionFilter{}, idflow.Page{}); len(sessions.Items) != 0 {
		t.Fatalf("the nested send_message ran: %+v", sessions.Items)
	}
	if idflow.InToolCall(context.Background()) {
		t.Fatal("InToolCall is true outside any tool")
	}
	// At the top level send_message works, and its session is the caller's.
	var sent struct {
		SessionID string         `json:"session_id"`
		Reply     idflow.Message `json:"reply"`
	}
	r.ok(t, alice, "send_message", `{"content":"hello","user_id":"bob"}`, &sent)
	if sent.SessionID == "" || sent.Reply.UserID != "alice" {
		t.Fatalf("send_message: %+v", sent)
	}
}

// TestOtherUsersObjectsAreNotFound: bob naming alice's workflow or run
// gets the answer of an object that does not exist.
func TestOtherUsersObjectsAreNotFound(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	ctx := context.Background()
	wf, err := r.svc.CreateWorkflow(ctx, alice, "hers", idflow.Definition{Steps: []idflow.Step{{ID: "who", Type: idflow.StepTool, Tool: "whoami"}}})
	if err != nil {
		t.Fatal(err)
	}
	var run idflow.Run
	r.ok(t, alice, "start_workflow", fmt.Sprintf(`{"workflow_id":%q,"input":{"x":1}}`, wf.ID), &run)
	if run.UserID != "alice" || run.WorkflowID != wf.ID || run.Status != idflow.RunQueued {
		t.Fatalf("alice's start_workflow: %+v", run)
	}
	var got idflow.Run
	r.ok(t, alice, "get_run", fmt.Sprintf(`{"run_id":%q}`, run.ID), &got)
	if got.ID != run.ID {
		t.Fatalf("alice's get_run: %+v", got)
	}
	for _, c := range []struct{ tool, theirs, missing string }{
		{"start_workflow", fmt.Sprintf(`{"workflow_id":%q}`, wf.ID), `{"workflow_id":"wf_doesnotexist000000000000"}`},
		{"get_run", fmt.Sprintf(`{"run_id":%q}`, run.ID), `{"run_id":"run_doesnotexist000000000000"}`},
		{"start_workflow", fmt.Sprintf(`{"workflow_id":%q,"owner":"alice","user_id":"alice"}`, wf.ID), `{"workflow_id":"wf_doesnotexist000000000000"}`},
	} {
		theirs, missing := r.call(bob, c.tool, c.theirs), r.call(bob, c.tool, c.missing)
		refused(t, theirs, idflow.ENOTFOUND)
		if theirs.Content != missing.Content {
			t.Fatalf("%s on alice's object answers bob %q, on a missing one %q", c.tool, theirs.Content, missing.Content)
		}
	}
	runs, err := r.svc.ListRuns(ctx, bob, idflow.Page{})
	if err != nil || len(runs.Items) != 0 {
		t.Fatalf("bob has runs: %+v, %v", runs.Items, err)
	}
}

func TestDownstreamGetActsAsTheCaller(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	var out struct {
		Status int `json:"status"`
		Body   struct{ Provider, Path, User string }
	}
	r.ok(t, alice, "downstream_get", `{"provider":"gh","path":"/user","user_id":"bob","as_user":"bob"}`, &out)
	if out.Status != 200 || out.Body.User != "alice" || out.Body.Path != "/user" || out.Body.Provider != "gh" {
		t.Fatalf("downstream_get: %+v", out)
	}
	refused(t, r.call(alice, "downstream_get", `{"provider":"gh","path":"https://evil.example/x"}`), idflow.EINVALID)
	refused(t, r.call(alice, "downstream_get", `{"provider":"gh","path":"//evil.example/x"}`), idflow.EINVALID)
	refused(t, r.call(alice, "downstream_get", `{"provider":"gh","path":"/down"}`), idflow.EUNAVAILABLE)
	r.down.mu.Lock()
	defer r.down.mu.Unlock()
	if !slices.Equal(r.down.users, []string{"alice", "alice"}) {
		t.Fatalf("the downstream was called for %v", r.down.users)
	}
}

// TestDisconnectActsAsTheCaller: disconnect removes the caller's own
// connection; an argument naming another user is stripped (and audited),
// so bob's connection survives alice's call naming him; the policy feature
// tool.disconnect closes it like any tool.
func TestDisconnectActsAsTheCaller(t *testing.T) {
	r := newRig(t, `{"features": {"tool.disconnect": {"roles": ["sales"]}}}`, tools.Config{})
	r.down.connected = map[string]bool{"alice/gh": true, "bob/gh": true, "sam/gh": true}
	refused(t, r.call(alice, "disconnect", `{"provider":"gh"}`), idflow.EFORBIDDEN) // closed to alice by the policy
	if specs, _ := r.catalog.ToolsFor(context.Background(), alice); slices.Contains(names(specs), "disconnect") {
		t.Fatal("disconnect is offered to a caller the policy closes it to")
	}

	open := newRig(t, `{}`, tools.Config{})
	open.down.connected = map[string]bool{"alice/gh": true, "bob/gh": true}
	var out struct {
		Provider     string `json:"provider"`
		Disconnected bool   `json:"disconnected"`
	}
	open.ok(t, alice, "disconnect", `{"provider":"gh","user_id":"bob","as_user":"bob"}`, &out)
	if out.Provider != "gh" || !out.Disconnected {
		t.Fatalf("disconnect answered %+v", out)
	}
	open.down.mu.Lock()
	users, left := slices.Clone(open.down.users), maps.Clone(open.down.connected)
	open.down.mu.Unlock()
	if !slices.Equal(users, []string{"alice"}) || !left["bob/gh"] || left["alice/gh"] {
		t.Fatalf("disconnect acted for %v; connections left %v; want alice's removed, bob's kept", users, left)
	}
	if !slices.ContainsFunc(open.audit(t, alice), func(e idflow.AuditEvent) bool {
		return e.Resource == "tool/disconnect/argument/user_id" && e.Outcome == idflow.OutcomeDenied
	}) {
		t.Fatal("the user_id argument's removal is not audited")
	}
	// Disconnecting again, or a provider never connected: not found.
	refused(t, open.call(alice, "disconnect", `{"provider":"gh"}`), idflow.ENOTFOUND)
	refused(t, open.call(alice, "disconnect", `{}`), idflow.EINVALID)
}

// TestEveryCallIsAudited: tool, outcome, channel and duration.
func TestEveryCallIsAudited(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	ctx := idflow.WithRequestInfo(tools.WithChannel(context.Background(), tools.ChannelWorkflow), idflow.RequestInfo{RequestID: "req-1"})
	if res := r.callCtx(ctx, alice, "whoami", ``, nil); !res.OK || !strings.Contains(res.Content, `"user_id":"alice"`) {
		t.Fatalf("whoami: %+v", res)
	}
	refused(t, r.callCtx(tools.WithChannel(context.Background(), tools.ChannelMCP), alice, "get_run", `{"run_id":"run_x"}`, nil), idflow.ENOTFOUND)
	r.call(alice, "add_fact", `{"content":"x"}`)
	events := r.audit(t, alice)
	var who idflow.AuditEvent
	for _, e := range events {
		if e.Resource == "tool/whoami" {
			who = e
		}
	}
	if who.Action != tools.ActionCall || who.Outcome != idflow.OutcomeSuccess || who.RequestID != "req-1" ||
		!strings.HasPrefix(who.Detail, "channel=workflow duration_ms=") {
		t.Fatalf("whoami's audit event: %+v", who)
	}
	if !audited(events, idflow.OutcomeDenied, "tool/get_run", "channel=mcp") || !audited(events, idflow.OutcomeSuccess, "tool/add_fact", "channel=agent") {
		t.Fatalf("audit: %+v", events)
	}
}

// TestSourcesAreMerged: tools of several sources are merged; a name that
// is invalid, a built-in's, or another source's is refused; a failing or
// stuck source leaves the others' tools offered.
func TestSourcesAreMerged(t *testing.T) {
	second, failing, stuck := &source{}, &source{err: fmt.Errorf("down")}, &source{block: make(chan struct{})}
	defer close(stuck.block)
	r := newRig(t, `{}`, tools.Config{SourceTimeout: 200 * time.Millisecond}, second, failing, stuck)
	r.src.add("tickets__search", nil)
	r.src.add("whoami", nil) // a built-in's name
	r.src.add("bad name", nil)
	r.src.add(strings.Repeat("x", 65), nil)
	second.add("tickets__search", func(context.Context, idflow.Principal, json.RawMessage) (any, error) { return "second", nil })
	second.add("github__issues", nil)
	failing.add("broken__tool", nil)
	stuck.add("slow__tool", nil)
	start := time.Now()
	specs, err := r.catalog.ToolsFor(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("a stuck source held the listing for %s", elapsed)
	}
	got := names(specs)
	want := append(slices.Clone(builtins), "github__issues", "tickets__search")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("merged tools %v; want %v", got, want)
	}
	var who struct {
		UserID string `json:"user_id"`
	}
	r.ok(t, alice, "whoami", `{}`, &who) // the built-in, not the source's
	if who.UserID != "alice" || len(r.src.calledWith()) != 0 {
		t.Fatalf("whoami ran the source's tool: %+v", r.src.calledWith())
	}
	var first map[string]string
	r.ok(t, alice, "tickets__search", `{}`, &first) // the first source's
	if first["ran_as"] != "alice" || len(second.calledWith()) != 0 {
		t.Fatalf("tickets__search answered %v", first)
	}
	r.ok(t, alice, "github__issues", `{}`, nil)
	refused(t, r.call(alice, "bad name", `{}`), idflow.EINVALID)
	refused(t, r.call(alice, "broken__tool", `{}`), idflow.EINVALID)
}

// TestPanickingToolIsAudited: the panic reaches the channel's own
// recovery, and the call is in the audit trail.
func TestPanickingToolIsAudited(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	r.src.add("boom", func(context.Context, idflow.Principal, json.RawMessage) (any, error) { panic("a bug") })
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic was swallowed")
			}
		}()
		r.call(alice, "boom", `{}`)
	}()
	if !audited(r.audit(t, alice), idflow.OutcomeFailure, "tool/boom", "panicked") {
		t.Fatal("the panicking call was not audited")
	}
}

// TestResultsAreJSON: a result is the tool's answer as JSON text (not
// HTML-escaped: a model reads it).
func TestResultsAreJSON(t *testing.T) {
	r := newRig(t, `{}`, tools.Config{})
	r.src.add("text", func(context.Context, idflow.Principal, json.RawMessage) (any, error) { return "<b>&", nil })
	r.src.add("unencodable", func(context.Context, idflow.Principal, json.RawMessage) (any, error) { return func() {}, nil })
	if res := r.call(alice, "text", ``); !res.OK || res.Content != `"<b>&"` || res.ToolCallID != "call_1" || res.Name != "text" {
		t.Fatalf("text: %+v", res)
	}
	res := r.call(alice, "unencodable", ``)
	refused(t, res, idflow.EINTERNAL)
	if bytes.Contains([]byte(res.Content), []byte("func")) {
		t.Fatalf("an internal error leaks its cause: %q", res.Content)
	}
}

// finder is a source that also finds one tool by name (tools.Finder), and
// counts how often it was listed whole.
type finder struct {
	source
	listed atomic.Int32
}

func (f *finder) Tools(ctx context.Context, p idflow.Principal) ([]tools.Tool, error) {
	f.listed.Add(1)
	return f.source.Tools(ctx, p)
}

func (f *finder) Tool(ctx context.Context, p idflow.Principal, name string) (tools.Tool, bool, error) {
	ts, err := f.source.Tools(ctx, p)
	for _, t := range ts {
		if t.Name == name {
			return t, true, err
		}
	}
	return tools.Tool{}, false, err
}

// TestFinderSourcesAreAskedForOneTool: a call of a Finder's tool asks the
// sources for that tool, in order, and lists none of them whole; the
// choice is the one the merged list makes (a failing source is passed
// over, an invalid tool is refused and the next source's taken).
func TestFinderSourcesAreAskedForOneTool(t *testing.T) {
	failing, first, second := &finder{source: source{err: fmt.Errorf("down")}}, &finder{}, &finder{}
	r := newRig(t, `{}`, tools.Config{})
	var err error
	if r.catalog, err = tools.New(tools.Config{}, tools.Deps{Svc: r.svc, Sources: []tools.Source{failing, first, second}}); err != nil {
		t.Fatal(err)
	}
	failing.add("tickets__search", nil)
	first.add("tickets__search", nil)
	first.tools[0].Parameters = json.RawMessage(`["not an object"]`)
	first.add("github__issues", nil)
	second.add("tickets__search", func(context.Context, idflow.Principal, json.RawMessage) (any, error) { return "second", nil })
	var got string
	r.ok(t, alice, "tickets__search", `{}`, &got)
	if got != "second" || len(first.calledWith()) != 0 {
		t.Fatalf("tickets__search answered %q; want the second source's (the first's has no object schema)", got)
	}
	var ran map[string]string
	r.ok(t, bob, "github__issues", `{}`, &ran)
	if ran["ran_as"] != "bob" {
		t.Fatalf("github__issues ran as %v", ran)
	}
	refused(t, r.call(alice, "nope__x", `{}`), idflow.EINVALID)
	for i, f := range []*finder{failing, first, second} {
		if n := f.listed.Load(); n != 0 {
			t.Fatalf("source %d was listed whole %d times for three calls", i, n)
		}
	}
}
