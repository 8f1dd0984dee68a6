package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/idflow/idflow"
)

// The authorization matrix is generated from /openapi.json, which is
// generated from the route table: a new route shows up here by itself, and
// the test fails until matrixCases says how to call it.

// apiOp is one operation of the OpenAPI document.
type apiOp struct {
	Method, Path string
	Access       string // x-access: open, any, user, admin, internal, scim
	TokenScope   string // x-token-scope: the personal access token scope it needs; "" = PATs refused
	Success      int    // the documented 2xx status
}

func (o apiOp) key() string { return o.Method + " " + o.Path }

// byID reports whether the route names an object in its path: a path
// parameter that its matrix case does not fix to a constant.
func (o apiOp) byID() bool {
	for _, m := range pathParamRE.FindAllStringSubmatch(o.Path, -1) {
		if _, fixed := matrixCases[o.key()].params[m[1]]; !fixed {
			return true
		}
	}
	return false
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// fetchOps reads every operation of /openapi.json (as alice).
func fetchOps(t *testing.T, s *prodServer) []apiOp {
	t.Helper()
	r := s.As(t, callerAlice, "GET", "/openapi.json", nil)
	mustStatus(t, r, http.StatusOK)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.JSON(t, &doc)
	var ops []apiOp
	for path, item := range doc.Paths {
		for method, raw := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			var op struct {
				Access     string                     `json:"x-access"`
				TokenScope string                     `json:"x-token-scope"`
				Responses  map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			o := apiOp{Method: strings.ToUpper(method), Path: path, Access: op.Access, TokenScope: op.TokenScope}
			for code := range op.Responses {
				if n, err := strconv.Atoi(code); err == nil && n >= 200 && n < 300 && (o.Success == 0 || n < o.Success) {
					o.Success = n
				}
			}
			if o.Success == 0 {
				t.Errorf("%s: no documented success status", o.key())
			}
			switch o.Access {
			case "open", "any", "user", "admin", "internal", "scim":
			default:
				t.Errorf("%s: x-access %q is not a known access level", o.key(), o.Access)
			}
			ops = append(ops, o)
		}
	}
	if len(ops) == 0 {
		t.Fatal("/openapi.json lists no operations")
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].key() < ops[j].key() })
	return ops
}

// secretMarker is in every text alice stores; no other caller may ever see it.
const secretMarker = "ALICE-ONLY-7f3a9c"

const aliceFactText = "the launch code of project aardvark is 4711 " + secretMarker

// matrixCase says how to call one route. Every route needs one, even
// without a body, so that adding a route forces a decision here.
type matrixCase struct {
	body    any               // request body, nil for none
	headers []header          // extra request headers
	params  map[string]string // path parameters that name no object (fixed values)
	// status, for an open route, is the one answer every caller gets when
	// it is not the documented success (browser sign-in is not configured
	// in the matrix's server).
	status int
	// ok, for other routes, is the answer of every caller who passes
	// authentication and authorization, when it is not the documented
	// success (a request that needs state the matrix does not set up).
	ok int
}

var matrixCases = map[string]matrixCase{
	"GET /healthz":                      {},
	"GET /auth/login":                   {status: http.StatusNotFound},
	"GET /auth/callback":                {status: http.StatusNotFound},
	"POST /auth/logout":                 {status: http.StatusNotFound},
	"GET /":                             {},
	"GET /static/{file}":                {params: map[string]string{"file": "app.js"}},
	"GET /readyz":                       {},
	"GET /.well-known/idflow/jwks.json": {},
	"GET /openapi.json":                 {},
	"GET /api/v1/me":                    {},
	"GET /auth/validate":                {},

	"GET /api/v1/apps":             {},
	"POST /api/v1/apps":            {body: map[string]any{"name": "matrix app", "description": "made by the matrix"}},
	"GET /api/v1/apps/{app_id}":    {},
	"PATCH /api/v1/apps/{app_id}":  {body: map[string]any{"name": "renamed app"}},
	"DELETE /api/v1/apps/{app_id}": {},

	"GET /api/v1/sessions":                         {},
	"POST /api/v1/sessions":                        {body: map[string]any{"title": "matrix chat"}},
	"GET /api/v1/sessions/{session_id}":            {},
	"PATCH /api/v1/sessions/{session_id}":          {body: map[string]any{"title": "renamed chat"}},
	"DELETE /api/v1/sessions/{session_id}":         {},
	"GET /api/v1/sessions/{session_id}/messages":   {},
	"POST /api/v1/sessions/{session_id}/messages":  {body: map[string]any{"content": "hello from the matrix"}},
	"GET /api/v1/agents":                           {},
	"POST /api/v1/agents":                          {body: map[string]any{"name": "matrix agent", "instructions": "be brief", "tools": []string{}}},
	"GET /api/v1/agents/{agent_id}":                {},
	"PATCH /api/v1/agents/{agent_id}":              {body: map[string]any{"name": "renamed agent"}},
	"DELETE /api/v1/agents/{agent_id}":             {},
	"GET /api/v1/workflows":                        {},
	"POST /api/v1/workflows":                       {body: quickWorkflow("matrix workflow")},
	"GET /api/v1/workflows/{workflow_id}":          {},
	"PUT /api/v1/workflows/{workflow_id}":          {body: quickWorkflow("replaced workflow")},
	"DELETE /api/v1/workflows/{workflow_id}":       {},
	"POST /api/v1/workflows/{workflow_id}/publish": {},
	"POST /api/v1/workflows/{workflow_id}/runs":    {body: map[string]any{"input": map[string]any{"topic": "matrix"}}},
	"GET /api/v1/runs":                             {},
	"GET /api/v1/runs/{run_id}":                    {},
	"GET /api/v1/runs/{run_id}/events":             {},
	"POST /api/v1/runs/{run_id}/cancel":            {},
	"GET /ws/execution/{run_id}":                   {},
	"POST /api/v1/etl/ingest":                      {body: map[string]any{"filename": "matrix.txt", "content": "a document from the matrix"}},
	"GET /api/v1/documents":                        {},
	"GET /api/v1/documents/{document_id}":          {},
	"DELETE /api/v1/documents/{document_id}":       {},
	"GET /api/v1/documents/{document_id}/content":  {},
	"GET /api/v1/facts":                            {},
	"POST /api/v1/facts":                           {body: map[string]any{"content": "a fact from the matrix"}},
	"GET /api/v1/facts/{fact_id}":                  {},
	"DELETE /api/v1/facts/{fact_id}":               {},
	"POST /api/v1/memory/search":                   {body: map[string]any{"query": aliceFactText, "limit": 50}},
	"GET /api/v1/users/{user_id}/facts":            {},
	"GET /api/v1/tools":                            {},
	"GET /api/v1/llms":                             {},
	"GET /api/v1/personas":                         {},
	"GET /api/v1/tags":                             {},
	"GET /api/v1/audit":                            {},
	"GET /api/v1/usage":                            {},
	"GET /api/v1/admin/users":                      {},
	"GET /api/v1/admin/usage":                      {},
	"GET /api/v1/admin/budgets":                    {},
	"POST /api/v1/admin/budgets/reset":             {},
	"GET /api/v1/admin/audit":                      {},
	"GET /api/v1/admin/audit/verify":               {},
	"GET /internal/v1/stats":                       {},
	"GET /api/v1/tokens":                           {},
	"GET /api/v1/me/export":                        {},
	"POST /api/v1/tokens":                          {body: map[string]any{"name": "matrix token", "scopes": []string{"read"}}},
	"DELETE /api/v1/tokens/{token_id}":             {},
	// A user never seen: erasing a real one is TestEraseUser's; here every
	// admin gets past authorization to the store's 404.
	"DELETE /api/v1/admin/users/{user_id}": {params: map[string]string{"user_id": "0e4a5e00-0000-4000-8000-0000000000ff"}, ok: http.StatusNotFound},
	"GET /metrics":                         {},
	// Nobody the matrix knows: an admin's answer is 404 (another tenant's
	// user answers the same; TestSCIMConformance disables real ones).
	"POST /api/v1/admin/users/{user_id}/disable": {params: map[string]string{"user_id": "matrix-nobody"}, ok: http.StatusNotFound},
	"POST /api/v1/admin/users/{user_id}/enable":  {params: map[string]string{"user_id": "matrix-nobody"}, ok: http.StatusNotFound},

	// SCIM: only the provisioning client (callerApp, in IDFLOW_SCIM_CLIENTS)
	// passes; resources by id name none (404), TestSCIMConformance drives
	// real ones.
	"GET /scim/v2/ServiceProviderConfig": {},
	"GET /scim/v2/ResourceTypes":         {},
	"GET /scim/v2/Schemas":               {},
	"GET /scim/v2/Users":                 {},
	"POST /scim/v2/Users":                {body: map[string]any{"userName": "matrix@t-one.example", "externalId": "matrix-user"}},
	"GET /scim/v2/Users/{id}":            {params: map[string]string{"id": "scu_missing"}, ok: http.StatusNotFound},
	"PUT /scim/v2/Users/{id}":            {params: map[string]string{"id": "scu_missing"}, ok: http.StatusNotFound, body: map[string]any{"userName": "x@t-one.example"}},
	"PATCH /scim/v2/Users/{id}":          {params: map[string]string{"id": "scu_missing"}, ok: http.StatusNotFound, body: map[string]any{"Operations": []any{map[string]any{"op": "Replace", "path": "active", "value": "False"}}}},
	"DELETE /scim/v2/Users/{id}":         {params: map[string]string{"id": "scu_missing"}, ok: http.StatusNotFound},
	"GET /scim/v2/Groups":                {},
	"POST /scim/v2/Groups":               {body: map[string]any{"displayName": "matrix group"}},
	"GET /scim/v2/Groups/{id}":           {params: map[string]string{"id": "scg_missing"}, ok: http.StatusNotFound},
	"PUT /scim/v2/Groups/{id}":           {params: map[string]string{"id": "scg_missing"}, ok: http.StatusNotFound, body: map[string]any{"displayName": "g"}},
	"PATCH /scim/v2/Groups/{id}":         {params: map[string]string{"id": "scg_missing"}, ok: http.StatusNotFound, body: map[string]any{"Operations": []any{map[string]any{"op": "Add", "path": "members", "value": []any{}}}}},
	"DELETE /scim/v2/Groups/{id}":        {params: map[string]string{"id": "scg_missing"}, ok: http.StatusNotFound},

	"GET /.well-known/oauth-protected-resource":     {},
	"GET /.well-known/oauth-protected-resource/mcp": {},
	"POST /mcp": {body: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"matrix","version":"1"}}}`,
		headers: []header{{"Accept", "application/json, text/event-stream"}}},
	// Without an Mcp-Session-Id (the matrix opens no MCP session) the MCP
	// transport refuses a stream or an end: 400.
	"GET /mcp":    {ok: http.StatusBadRequest, headers: []header{{"Accept", "text/event-stream"}}},
	"DELETE /mcp": {ok: http.StatusBadRequest},
}

// quickWorkflow is a one-step workflow whose runs end at once.
func quickWorkflow(name string) map[string]any {
	return map[string]any{"name": name, "definition": map[string]any{"steps": []any{
		map[string]any{"id": "ask", "type": "prompt", "prompt": "summarise " + name},
	}}}
}

// fixture lazily creates alice's objects, one per path parameter.
type fixture struct {
	t        *testing.T
	s        *prodServer
	who      string
	longRuns bool // a run that stays in progress (for cancel)
	ids      map[string]string
	created  *[]string // every id made, for leak checks
}

func newFixture(t *testing.T, s *prodServer, who string, longRuns bool, created *[]string) *fixture {
	return &fixture{t: t, s: s, who: who, longRuns: longRuns, ids: map[string]string{}, created: created}
}

func (f *fixture) keep(id string) string {
	*f.created = append(*f.created, id)
	return id
}

// id returns the id for a path parameter, creating the object on first use.
func (f *fixture) id(param string) string {
	t, s := f.t, f.s
	t.Helper()
	if id, ok := f.ids[param]; ok {
		return id
	}
	var id string
	switch param {
	case "user_id":
		id = s.UserID(t, f.who)
	case "app_id":
		id = s.create(t, f.who, "/api/v1/apps", map[string]any{"name": "app " + secretMarker, "description": secretMarker})
	case "agent_id":
		id = s.create(t, f.who, "/api/v1/agents", map[string]any{"name": "agent " + secretMarker, "instructions": "answer as " + secretMarker})
	case "session_id":
		id = s.create(t, f.who, "/api/v1/sessions", map[string]any{"title": "chat " + secretMarker, "app_id": f.id("app_id"), "agent_id": f.id("agent_id")})
		r := s.As(t, f.who, "POST", "/api/v1/sessions/"+id+"/messages", map[string]any{"content": "hello " + secretMarker})
		mustStatus(t, r, http.StatusCreated)
		var out struct{ Message, Reply object }
		r.JSON(t, &out)
		f.keep(out.Message.ID)
		f.keep(out.Reply.ID)
	case "workflow_id":
		id = s.create(t, f.who, "/api/v1/workflows", quickWorkflow("workflow "+secretMarker))
	case "run_id":
		if f.longRuns {
			wf := f.keep(s.create(t, f.who, "/api/v1/workflows", map[string]any{"name": "long " + secretMarker,
				"definition": map[string]any{"steps": []any{map[string]any{"id": "hold", "type": "wait", "ms": 60000}}}}))
			id = s.create(t, f.who, "/api/v1/workflows/"+wf+"/runs", map[string]any{"input": secretMarker})
		} else {
			id = s.create(t, f.who, "/api/v1/workflows/"+f.id("workflow_id")+"/runs", map[string]any{"input": secretMarker})
			s.waitRun(t, f.who, id)
		}
	case "document_id":
		id = s.create(t, f.who, "/api/v1/etl/ingest", map[string]any{"filename": "secret.txt", "content": "The document of " + secretMarker + ".\n\nSecond paragraph."})
	case "fact_id":
		id = s.create(t, f.who, "/api/v1/facts", map[string]any{"content": aliceFactText})
	case "token_id":
		id = s.create(t, f.who, "/api/v1/tokens", map[string]any{"name": "token " + secretMarker, "scopes": []string{"read"}})
	default:
		t.Fatalf("no fixture for path parameter {%s}", param)
	}
	f.ids[param] = f.keep(id)
	return id
}

var pathParamRE = regexp.MustCompile(`\{([a-z_]+)\}`)

// fill replaces each {param} of pattern with idOf(param).
func fill(pattern string, idOf func(string) string) string {
	return pathParamRE.ReplaceAllStringFunc(pattern, func(m string) string { return idOf(m[1 : len(m)-1]) })
}

// nonOwners call before the owner, so a route that wrongly lets them act
// changes alice's object before she uses it — and fails loudly.
var nonOwners = []string{callerBob, callerCarol, callerAdmin, callerAdmin2, callerRoot, callerApp, callerExpired, callerNone}

// adminCallers hold an admin role: alice's own tenant's admin, another
// tenant's, and the platform admin.
var adminCallers = []string{callerAdmin, callerAdmin2, callerRoot}

// readsAliceFacts reports whether caller may read alice's facts at
// /api/v1/users/{user_id}/facts: her own tenant's admin and the platform
// admin may (audited); another tenant's admin gets 404 like anyone else.
func readsAliceFacts(caller string) bool { return caller == callerAdmin || caller == callerRoot }

// expectedStatus is the answer a caller must get from a route, given only
// its access level (and, for user routes, whether it names alice's object).
func expectedStatus(op apiOp, caller string) int {
	unauthenticated := caller == callerExpired || caller == callerNone
	st := expectedAccess(op, caller, unauthenticated)
	if ok := matrixCases[op.key()].ok; ok != 0 && op.Access != "open" && st == op.Success {
		return ok
	}
	return st
}

func expectedAccess(op apiOp, caller string, unauthenticated bool) int {
	switch op.Access {
	case "open":
		if st := matrixCases[op.key()].status; st != 0 {
			return st
		}
		return op.Success
	case "any":
		if unauthenticated {
			return http.StatusUnauthorized
		}
		return op.Success
	case "admin":
		switch {
		case unauthenticated:
			return http.StatusUnauthorized
		case slices.Contains(adminCallers, caller):
			return op.Success // filtered to the admin's tenant: checkAdminScope
		}
		return http.StatusForbidden
	case "internal", "scim":
		switch {
		case unauthenticated:
			return http.StatusUnauthorized
		case caller == callerApp:
			return op.Success
		}
		return http.StatusForbidden
	case "user":
		switch {
		case unauthenticated:
			return http.StatusUnauthorized
		case caller == callerApp:
			return http.StatusForbidden
		case !op.byID(), caller == callerAlice:
			return op.Success
		case op.Path == "/api/v1/users/{user_id}/facts" && readsAliceFacts(caller):
			return op.Success // an admin of alice's tenant, or the platform admin (audited)
		}
		return http.StatusNotFound
	}
	return -1
}

func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, map[string]string{"IDFLOW_SCIM_CLIENTS": testAppClientID})
	ops := fetchOps(t, s)

	documented := map[string]bool{}
	for _, op := range ops {
		documented[op.key()] = true
		if _, ok := matrixCases[op.key()]; !ok {
			t.Errorf("route %s has no authorization-matrix case: add it to matrixCases", op.key())
		}
	}
	for key := range matrixCases {
		if !documented[key] {
			// Harmless (a renamed route fails above, as a route without a
			// case), and lets a case land before its route.
			t.Logf("matrixCases has %s, which /openapi.json does not document", key)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	var aliceIDs []string
	shared := newFixture(t, s, callerAlice, false, &aliceIDs)
	for _, p := range []string{"app_id", "agent_id", "session_id", "workflow_id", "run_id", "document_id", "fact_id"} {
		shared.id(p)
	}
	// Every object alice has, also those made from her document.
	for _, path := range []string{"/api/v1/facts", "/api/v1/documents", "/api/v1/runs", "/api/v1/sessions"} {
		for _, raw := range s.listAll(t, callerAlice, path) {
			var o object
			if err := json.Unmarshal(raw, &o); err != nil {
				t.Fatal(err)
			}
			aliceIDs = append(aliceIDs, o.ID)
		}
	}
	aliceUserID := s.UserID(t, callerAlice)
	// Every tenant has users seen and events before the admin routes run:
	// a write of carol's (t-two), and each admin signs in.
	s.create(t, callerCarol, "/api/v1/facts", map[string]any{"content": "carol's own fact"})
	carolSession := s.create(t, callerCarol, "/api/v1/sessions", map[string]any{"title": "carol's chat"})
	mustStatus(t, s.As(t, callerCarol, "POST", "/api/v1/sessions/"+carolSession+"/messages", map[string]any{"content": "carol asks the model"}), http.StatusCreated)
	for _, who := range adminCallers {
		mustStatus(t, s.As(t, who, "GET", "/api/v1/me", nil), http.StatusOK)
	}

	for _, op := range ops {
		t.Run(op.key(), func(t *testing.T) {
			fx := shared
			if op.Method != "GET" && op.byID() {
				// Destructive or state-changing: a fresh object of its own,
				// so that the order of routes does not matter.
				fx = newFixture(t, s, callerAlice, op.Path == "/api/v1/runs/{run_id}/cancel", &aliceIDs)
			}
			path := fill(op.Path, func(p string) string {
				if v, ok := matrixCases[op.key()].params[p]; ok {
					return v
				}
				return fx.id(p)
			})
			mc := matrixCases[op.key()]
			for _, caller := range append(slices.Clone(nonOwners), callerAlice) {
				r := s.As(t, caller, op.Method, path, mc.body, mc.headers...)
				want := expectedStatus(op, caller)
				if op.Path == "/ws/execution/{run_id}" && want == op.Success {
					// A plain GET without upgrade headers: past authentication
					// and the owner check, the WebSocket library refuses it.
					if r.Status < 400 || r.Status >= 500 || r.Status == http.StatusNotFound {
						t.Errorf("%s as %s: %s; want a 4xx other than 404 from the WebSocket handshake", op.key(), caller, r)
					}
					continue
				}
				if r.Status != want {
					t.Errorf("%s as %s: %s; want %d", op.key(), caller, r, want)
					continue
				}
				if r.Status >= 400 && op.Access == "scim" {
					scimError(t, r, want, "") // SCIM clients read SCIM's error document
				} else if r.Status >= 400 && (mc.ok == 0 || r.Status != mc.ok) {
					checkProblem(t, r, want)
				}
				if r.Status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s as %s: 401 without a Bearer WWW-Authenticate challenge (got %q)", op.key(), caller, r.Header.Get("WWW-Authenticate"))
				}
				adminRead := op.Path == "/api/v1/users/{user_id}/facts" && readsAliceFacts(caller)
				if r.Status < 300 && op.Access == "user" && caller != callerAlice && !adminRead {
					checkNoLeak(t, s, r, caller, aliceIDs, aliceUserID, op.Path == "/api/v1/audit" || op.Path == "/api/v1/me/export")
				}
				if r.Status < 300 && op.Access == "admin" {
					checkAdminScope(t, s, r, caller, aliceIDs, aliceUserID, op.Path)
				}
				if r.Status < 300 && op.Path == "/auth/validate" {
					if got := r.Header.Get("X-Authenticated-User"); got != s.UserID(t, caller) {
						t.Errorf("%s as %s: X-Authenticated-User %q; want the caller %q", op.key(), caller, got, s.UserID(t, caller))
					}
				}
				if adminRead && r.Status == http.StatusOK {
					checkAdminReadAudited(t, s, caller, aliceUserID)
				}
			}
		})
	}
}

// checkNoLeak fails if a non-owner's answer carries anything of alice's:
// her text, her object ids, her user id, or any object owned by someone
// other than the caller. Audit lists may name ids the caller asked for
// (his own denied requests), so only their owners are checked.
func checkNoLeak(t *testing.T, s *prodServer, r reply, caller string, aliceIDs []string, aliceUserID string, isAudit bool) {
	t.Helper()
	body := string(r.Body)
	if strings.Contains(body, secretMarker) {
		t.Errorf("%s as %s: the answer carries alice's text", r, caller)
	}
	if !isAudit {
		for _, id := range append([]string{aliceUserID}, aliceIDs...) {
			if strings.Contains(body, id) {
				t.Errorf("%s as %s: the answer carries alice's id %s", r, caller, id)
			}
		}
	}
	var v any
	if json.Unmarshal(r.Body, &v) != nil {
		return
	}
	want := s.UserID(t, caller)
	walkJSON(v, func(key string, val any) {
		if key == "user_id" && val != want {
			t.Errorf("%s as %s: an object of user %v; want only the caller's (%s)", r, caller, val, want)
		}
	})
}

func walkJSON(v any, fn func(key string, val any)) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			fn(k, x[k])
			walkJSON(x[k], fn)
		}
	case []any:
		for _, e := range x {
			walkJSON(e, fn)
		}
	}
}

// checkAdminReadAudited requires an audit event of the admin reading
// alice's facts, whose action and detail say which reach was used: within
// the admin's own tenant, or across tenants as the platform admin.
func checkAdminReadAudited(t *testing.T, s *prodServer, caller, aliceUserID string) {
	t.Helper()
	adminID := s.UserID(t, caller)
	action, detail := "admin.facts.read", `tenant "t-one"`
	if caller == callerRoot {
		action, detail = "platform_admin.facts.read", "all tenants"
	}
	for _, e := range s.auditEvents(t, callerRoot, "/api/v1/admin/audit") {
		if e.UserID == adminID && e.Outcome == idflow.OutcomeSuccess && e.Resource == "user/"+aliceUserID &&
			e.Action == action && e.Detail == detail {
			return
		}
	}
	t.Errorf("%s read alice's facts, but /api/v1/admin/audit has no success event %s (%s) of it", caller, action, detail)
}

// oneTenantAdminRoutes act on one tenant even for the platform admin.
var oneTenantAdminRoutes = map[string]bool{"/api/v1/admin/budgets": true, "/api/v1/admin/budgets/reset": true}

// checkAdminScope fails if a tenant admin's answer on an admin route
// reaches outside the admin's tenant (a user, an event, a tenant id of
// another tenant; for another tenant's admin, anything of alice's), or if
// the platform admin's does not cross tenants.
func checkAdminScope(t *testing.T, s *prodServer, r reply, caller string, aliceIDs []string, aliceUserID, path string) {
	t.Helper()
	var v any
	r.JSON(t, &v)
	tenant := testUsers[caller].tenant
	if caller == callerRoot {
		tenants := map[any]bool{}
		walkJSON(v, func(key string, val any) {
			if key == "tenant_id" {
				tenants[val] = true
			}
		})
		if oneTenantAdminRoutes[path] {
			// A platform admin names the tenant (?tenant_id=), by default
			// their own.
			if len(tenants) != 1 || !tenants[tenant] {
				t.Errorf("%s as the platform admin without ?tenant_id=: tenants %v; want their own, %s", r, slices.Collect(maps.Keys(tenants)), tenant)
			}
			return
		}
		if path != "/api/v1/admin/audit/verify" && (!tenants["t-one"] || !tenants["t-two"]) {
			t.Errorf("%s as the platform admin: tenants %v; want t-one and t-two", r, slices.Collect(maps.Keys(tenants)))
		}
		if path == "/api/v1/admin/audit/verify" && (v.(map[string]any)["all_tenants"] != true || v.(map[string]any)["ok"] != true) {
			t.Errorf("%s as the platform admin: want ok over all tenants", r)
		}
		return
	}
	inTenant := map[any]bool{}
	for _, u := range testUsers {
		if u.tenant == tenant {
			inTenant[u.oid] = true
		}
	}
	// The app-only caller's denials are audited in its own tenant.
	var app struct {
		UserID   string `json:"user_id"`
		TenantID string `json:"tenant_id"`
	}
	s.As(t, callerApp, "GET", "/api/v1/me", nil).JSON(t, &app)
	if app.TenantID == tenant {
		inTenant[app.UserID] = true
	}
	walkJSON(v, func(key string, val any) {
		switch {
		case key == "tenant_id" && val != tenant:
			t.Errorf("%s as %s (tenant %s): an item of tenant %v", r, caller, tenant, val)
		case key == "user_id" && !inTenant[val]:
			t.Errorf("%s as %s (tenant %s): an item of user %v, not of the tenant", r, caller, tenant, val)
		}
	})
	if path == "/api/v1/admin/audit/verify" {
		if m := v.(map[string]any); m["all_tenants"] != false || m["ok"] != true {
			t.Errorf("%s as %s: want ok over the admin's own tenant only", r, caller)
		}
	}
	if tenant != testUsers[callerAlice].tenant {
		body := string(r.Body)
		if strings.Contains(body, secretMarker) {
			t.Errorf("%s as %s: the answer carries alice's text", r, caller)
		}
		// The audit list may name ids the admin asked for itself (its own
		// denied requests); the user_id check above covers its actors.
		if path != "/api/v1/admin/audit" {
			for _, id := range append([]string{aliceUserID}, aliceIDs...) {
				if strings.Contains(body, id) {
					t.Errorf("%s as %s: the answer carries alice's id %s", r, caller, id)
				}
			}
		}
	}
}

// randomLike returns a random, well-formed id of the same kind as id: the
// same prefix for object ids, a GUID for user ids.
func randomLike(t *testing.T, param, id string) string {
	t.Helper()
	if param == "user_id" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		h := hex.EncodeToString(b[:])
		return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
	}
	prefix, _, ok := strings.Cut(id, "_")
	if !ok {
		t.Fatalf("id %q has no prefix", id)
	}
	out := idflow.NewID(prefix + "_")
	if len(out) != len(id) {
		t.Fatalf("random id %q is not shaped like %q", out, id)
	}
	return out
}

// comparableHeader drops the headers that differ per request by design.
func comparableHeader(h http.Header) http.Header {
	c := h.Clone()
	c.Del("Date")
	c.Del("X-Request-Id")
	return c
}

// TestNotFoundIsByteIdentical: another user's object and an object that
// does not exist answer exactly the same, and the denial is audited.
func TestNotFoundIsByteIdentical(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, map[string]string{"IDFLOW_SCIM_CLIENTS": testAppClientID})
	ops := fetchOps(t, s)
	var aliceIDs []string
	fx := newFixture(t, s, callerAlice, false, &aliceIDs)

	checked := 0
	for _, op := range ops {
		if op.Access != "user" || !op.byID() {
			continue
		}
		checked++
		t.Run(op.key(), func(t *testing.T) {
			mc := matrixCases[op.key()]
			random := map[string]string{}
			for _, m := range pathParamRE.FindAllStringSubmatch(op.Path, -1) {
				random[m[1]] = randomLike(t, m[1], fx.id(m[1]))
			}
			alicePath := fill(op.Path, fx.id)
			randomPath := fill(op.Path, func(p string) string { return random[p] })
			// callerAdmin2 administers t-two: alice (t-one) is not found.
			for _, caller := range []string{callerBob, callerCarol, callerAdmin2} {
				ridAlice, ridRandom := s.RequestID(caller+"-alice"), s.RequestID(caller+"-random")
				a := s.As(t, caller, op.Method, alicePath, mc.body, append(slices.Clone(mc.headers), header{"X-Request-Id", ridAlice})...)
				b := s.As(t, caller, op.Method, randomPath, mc.body, append(slices.Clone(mc.headers), header{"X-Request-Id", ridRandom})...)
				if a.Status != http.StatusNotFound {
					t.Errorf("%s as %s on alice's object: %s; want 404", op.key(), caller, a)
				}
				if a.Status != b.Status {
					t.Errorf("%s as %s: status %d for alice's object, %d for a missing one", op.key(), caller, a.Status, b.Status)
				}
				if ha, hb := comparableHeader(a.Header), comparableHeader(b.Header); !reflect.DeepEqual(ha, hb) {
					t.Errorf("%s as %s: headers differ:\nalice's:  %v\nmissing: %v", op.key(), caller, ha, hb)
				}
				if string(a.Body) != string(b.Body) {
					t.Errorf("%s as %s: bodies differ:\nalice's:  %q\nmissing: %q", op.key(), caller, a.Body, b.Body)
				}
				events := s.auditEvents(t, caller, "/api/v1/audit")
				denied := false
				for _, e := range findAudit(events, ridAlice) {
					denied = denied || e.Outcome == idflow.OutcomeDenied
				}
				if !denied {
					t.Errorf("%s as %s on alice's object: no denied event with request id %s in the caller's audit", op.key(), caller, ridAlice)
				}
			}
		})
	}
	if checked == 0 {
		t.Fatal("no by-id user routes were checked")
	}
}
