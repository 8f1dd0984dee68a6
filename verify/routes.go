package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// routeTasks walks every operation of /openapi.json as every caller but A:
// reads and writes first (deletes=false), deletes at the end (true).
func (v *verifier) routeTasks(deletes bool) []task {
	var out []task
	for _, op := range v.ops {
		if (op.Method == "DELETE") != deletes {
			continue
		}
		for _, c := range v.callers {
			if !v.walks(op, c) {
				continue
			}
			out = append(out, task{phase: "routes", label: op.key() + " as " + c.Name, run: func(ctx context.Context) { v.probeRoute(ctx, op, c) }})
		}
	}
	return out
}

// walks reports whether the route walk calls op as c: open routes only
// without credentials; WebSockets and /mcp for users in their own phases.
func (v *verifier) walks(op operation, c *caller) bool {
	switch {
	case op.Access == "open":
		return c.Name == nameNone && op.Method == "GET"
	case strings.HasPrefix(op.Path, "/ws/"):
		return false
	case op.Path == "/mcp":
		return c.role == roleUnauth || c.role == roleApp
	}
	return true
}

// bodyFor is the request body a route is called with: valid, so that the
// server reaches the owner check instead of refusing the input.
func (v *verifier) bodyFor(op operation) any {
	w := v.fx.word
	probe := "idflow verify probe " + w
	workflow := map[string]any{"name": probe, "definition": map[string]any{"steps": []any{
		map[string]any{"id": "ask", "type": "prompt", "prompt": "say hello"}}}}
	switch op.key() {
	case "POST /api/v1/apps":
		return map[string]any{"name": probe, "description": probe}
	case "PATCH /api/v1/apps/{app_id}":
		return map[string]any{"name": "renamed by idflow verify"}
	case "POST /api/v1/sessions":
		return map[string]any{"title": probe}
	case "PATCH /api/v1/sessions/{session_id}":
		return map[string]any{"title": "renamed by idflow verify"}
	case "POST /api/v1/sessions/{session_id}/messages":
		return map[string]any{"content": "Hello from idflow verify. What is in this chat?"}
	case "POST /api/v1/agents":
		return map[string]any{"name": probe, "instructions": "be brief", "tools": []string{}}
	case "PATCH /api/v1/agents/{agent_id}":
		return map[string]any{"name": "renamed by idflow verify"}
	case "POST /api/v1/workflows", "PUT /api/v1/workflows/{workflow_id}":
		return workflow
	case "POST /api/v1/workflows/{workflow_id}/runs":
		return map[string]any{"input": map[string]any{"note": probe}}
	case "POST /api/v1/etl/ingest":
		return map[string]any{"filename": "idflow-verify-probe.txt", "content": probe}
	case "POST /api/v1/facts":
		return map[string]any{"content": probe}
	case "POST /api/v1/memory/search":
		return map[string]any{"query": w, "limit": 50}
	case "POST /mcp":
		return mcpInitialize
	}
	if op.body != nil {
		return op.example(probe)
	}
	return nil
}

func (v *verifier) headersFor(op operation) []header {
	if op.Path == "/mcp" {
		return []header{{"Accept", "application/json, text/event-stream"}}
	}
	return nil
}

// refused reports whether an answer refuses a caller without credentials
// (or without the right kind or role): 401 or 403 — a proxy in front may
// answer either, or redirect to its sign-in — or 404 for admin routes a
// proxy hides.
func refused(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound ||
		(status >= 300 && status < 400)
}

func (v *verifier) probeRoute(ctx context.Context, op operation, c *caller) {
	target := op.key()
	category := "routes"
	if op.Access == "admin" {
		category = "admin"
	}
	dummy := c.role == roleUnauth || c.role == roleApp
	path, ok := v.fill(op.Path, false, dummy)
	if !ok {
		v.skip(category, target, c.Name, "a path parameter of a kind the verifier cannot fill; nothing of A's can be named")
		return
	}
	body := v.bodyFor(op)
	hdrs := v.headersFor(op)
	send := func(p string, b any) (*response, bool) {
		r, err := v.cl.do(ctx, c, op.Method, p, b, hdrs...)
		if err != nil {
			v.fail(category, target, c.Name, "an answer", v.cl.red.String(err.Error()), exchangeOf(r))
			return nil, false
		}
		return r, true
	}
	switch {
	case op.Access == "open":
		r, ok := send(path, nil)
		if !ok {
			return
		}
		v.verdict(category, target, c, "no object of anyone's", r.String(), v.serverError(r, v.leaks(c, r, scopeNothing)), []Exchange{r.ex})
	case c.role == roleUnauth:
		r, ok := send(path, body)
		if !ok {
			return
		}
		problems := v.leaks(c, r, scopeNothing)
		if !refused(r.status) {
			problems = append([]string{fmt.Sprintf("answered %s to %s", r, c.Label)}, problems...)
			v.removeCreated(c, r)
		}
		v.verdict(category, target, c, "401", r.String(), v.serverError(r, problems), []Exchange{r.ex})
	case c.role == roleApp:
		r, ok := send(path, body)
		if !ok {
			return
		}
		problems := v.leaks(c, r, scopeOwn)
		want := "403"
		switch op.Access {
		case "any":
			want = "a 2xx answer of its own"
		case "internal":
			want = "2xx (an allowlisted client) or 403"
		default:
			if !refused(r.status) {
				problems = append([]string{"an app-only token acted on a user route: " + r.String()}, problems...)
				v.removeCreated(c, r)
			}
		}
		v.verdict(category, target, c, want, r.String(), v.serverError(r, problems), []Exchange{r.ex})
	case op.Access == "admin" && c.role != roleAdmin, op.Access == "internal":
		r, ok := send(path, body)
		if !ok {
			return
		}
		problems := v.leaks(c, r, scopeOwn)
		if !refused(r.status) {
			problems = append([]string{fmt.Sprintf("%s without the role answered %s", c.Label, r)}, problems...)
		}
		v.verdict(category, target, c, "403", r.String(), v.serverError(r, problems), []Exchange{r.ex})
	case op.Access == "admin" && op.Method != http.MethodGet && slices.Contains(op.Params, "user_id"):
		// An admin's write on a user (disable, erase) is never aimed at A:
		// named a user nobody has, the admin gets past authorization to 404.
		rp, _ := v.fill(op.Path, true, false)
		r, ok := send(rp, v.bodyFor(op))
		if !ok {
			return
		}
		problems := v.leaks(c, r, scopeTenant)
		if r.status != http.StatusNotFound {
			problems = append(problems, "an admin's write on a user nobody has answered "+r.String())
		}
		v.verdict("admin", op.key(), c, "404 (a user nobody has)", r.String(), v.serverError(r, problems), []Exchange{r.ex})
	case op.Access == "admin":
		v.probeAdmin(ctx, op, c, path, send)
	case v.namesA(op) && op.Path == "/api/v1/users/{user_id}/facts" && c.role == roleAdmin && c.tenant == v.a.tenant:
		// An admin of A's own tenant may read A's facts here (audited).
		r, ok := send(path, body)
		if !ok {
			return
		}
		v.verdict(category, target, c, "200 (an admin of A's tenant; audited)", r.String(), v.serverError(r, nil), []Exchange{r.ex},
			"An admin of A's own tenant may read A's facts through this route; the read is audited.")
	case v.namesA(op):
		v.probeNotFound(ctx, category, op, c, body, hdrs)
	case op.create():
		v.probeCreate(ctx, op, c, body)
	default:
		r, ok := send(path, body)
		if !ok {
			return
		}
		problems := v.leaks(c, r, scopeOwn)
		if op.Path == "/auth/validate" && r.status == http.StatusOK && r.header.Get("X-Authenticated-User") != c.userID {
			problems = append(problems, fmt.Sprintf("X-Authenticated-User names %q, not the caller", r.header.Get("X-Authenticated-User")))
		}
		evidence := []Exchange{r.ex}
		if op.List && r.status == http.StatusOK {
			more, pages := v.morePages(ctx, c, path, r, scopeOwn)
			problems = append(problems, more...)
			evidence = append(evidence, pages...)
		}
		v.verdict(category, target, c, "the caller's own answer", r.String(), v.serverError(r, problems), evidence)
		if op.List && op.Method == "GET" && r.status == http.StatusOK {
			v.probeFilters(ctx, op, c, path, scopeOwn)
		}
	}
}

// serverError adds a 5xx to problems: no request may make the server fail.
func (v *verifier) serverError(r *response, problems []string) []string {
	if r.status >= 500 {
		return append([]string{"a server error: no request may cause one"}, problems...)
	}
	return problems
}

// probeNotFound calls a route that names A's object, then the same route
// naming a random object of the same shape: both must answer 404, alike
// byte for byte, or the answer tells another user that A's object exists.
func (v *verifier) probeNotFound(ctx context.Context, category string, op operation, c *caller, body any, hdrs []header) {
	target := op.key()
	pathA, _ := v.fill(op.Path, false, false)
	pathR, _ := v.fill(op.Path, true, false)
	ra, err := v.cl.do(ctx, c, op.Method, pathA, body, hdrs...)
	if err != nil {
		v.fail(category, target, c.Name, "404", v.cl.red.String(err.Error()), exchangeOf(ra))
		return
	}
	rr, err := v.cl.do(ctx, c, op.Method, pathR, body, hdrs...)
	if err != nil {
		v.fail(category, target, c.Name, "404", v.cl.red.String(err.Error()), exchangeOf(rr))
		return
	}
	var problems []string
	if ra.status != http.StatusNotFound {
		problems = append(problems, fmt.Sprintf("answered %s for A's object; another user's object must answer 404", ra))
	}
	problems = append(problems, v.leaks(c, ra, scopeOwn)...)
	problems = append(problems, sameAnswer(ra, rr)...)
	got := ra.String()
	if len(problems) == 0 {
		got = "404, the same as a missing id"
	}
	v.verdict(category, target, c, "404, byte for byte the answer for a missing id", got, v.serverError(ra, problems), []Exchange{ra.ex, rr.ex})
}

// volatile headers differ between any two requests. The rate-limit
// headers count the caller's own requests (one more each time), nothing
// about the object asked for; Connection and Keep-Alive are the
// connection's (a proxy closes a kept-alive one after so many requests,
// and Go's client then drops the header), not the answer's.
var volatile = []string{"Connection", "Keep-Alive", "Date", "X-Request-Id", "Set-Cookie", "Age", "Expires", "Traceparent", "Tracestate",
	"Server-Timing", "X-Amzn-Trace-Id", "Cf-Ray", "X-Envoy-Upstream-Service-Time", "Request-Id", "X-Correlation-Id",
	"Ratelimit", "Ratelimit-Policy", "Retry-After", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"}

// sameAnswer lists how the answer for A's object differs from the answer
// for a missing one.
func sameAnswer(a, missing *response) []string {
	var out []string
	if a.status != missing.status {
		return []string{fmt.Sprintf("A's object answers %d, a missing one %d: the status tells them apart", a.status, missing.status)}
	}
	if !bytes.Equal(a.body, missing.body) {
		out = append(out, "the body differs from the answer for a missing object, so it tells them apart")
	}
	names := map[string]bool{}
	for k := range a.header {
		names[k] = true
	}
	for k := range missing.header {
		names[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if slices.Contains(volatile, k) {
			continue
		}
		if !slices.Equal(a.header.Values(k), missing.header.Values(k)) {
			out = append(out, fmt.Sprintf("header %s differs from the answer for a missing object (%q, %q)", k,
				strings.Join(a.header.Values(k), ", "), strings.Join(missing.header.Values(k), ", ")))
		}
	}
	return out
}

// probeCreate calls a route that creates an object of the caller's:
// once with a body that names A as the owner (user_id: the new object
// must still be the caller's, or the body refused), and once for each
// property that names an object, naming A's and then a missing one (the
// server must refuse both alike, never bind the caller's object to A's).
func (v *verifier) probeCreate(ctx context.Context, op operation, c *caller, body any) {
	target := op.key()
	base, _ := body.(map[string]any)
	with := func(k, val string) map[string]any {
		b := maps.Clone(base)
		if b == nil {
			b = map[string]any{}
		}
		b[k] = val
		return b
	}
	var problems, gots []string
	var evidence []Exchange
	r, err := v.cl.do(ctx, c, op.Method, op.Path, with("user_id", v.a.userID))
	if err != nil {
		v.fail("routes", target, c.Name, "an answer", v.cl.red.String(err.Error()), exchangeOf(r))
		return
	}
	evidence = append(evidence, r.ex)
	gots = append(gots, fmt.Sprintf("user_id=A's: %d", r.status))
	var made object
	if r.status < 300 && json.Unmarshal(r.body, &made) == nil && made.UserID != c.userID {
		problems = append(problems, fmt.Sprintf("a body naming A as the owner (user_id) created an object of %q, not of the caller", made.UserID))
	}
	problems = append(problems, v.leaks(c, r, scopeOwn)...)
	v.removeCreated(c, r)
	for _, f := range op.IDFields {
		kind := v.fx.kindOf(f)
		if kind == "" || v.fx.ids[kind] == "" {
			continue
		}
		aID := v.fx.ids[kind]
		ra, err := v.cl.do(ctx, c, op.Method, op.Path, with(f, aID))
		if err != nil {
			problems = append(problems, v.cl.red.String(err.Error()))
			evidence = append(evidence, exchangeOf(ra)...)
			continue
		}
		rr, err := v.cl.do(ctx, c, op.Method, op.Path, with(f, randomLike(aID)))
		if err != nil {
			problems = append(problems, v.cl.red.String(err.Error()))
			evidence = append(evidence, exchangeOf(rr)...)
			continue
		}
		v.removeCreated(c, ra)
		v.removeCreated(c, rr)
		evidence = append(evidence, ra.ex, rr.ex)
		gots = append(gots, fmt.Sprintf("%s=A's: %d", f, ra.status))
		if ra.status < 300 {
			problems = append(problems, fmt.Sprintf("with %s naming A's %s it answered %s: the caller's new object is bound to A's", f, kind, ra))
		} else if ra.status != http.StatusNotFound {
			problems = append(problems, fmt.Sprintf("with %s naming A's %s it answered %s; want 404", f, kind, ra))
		}
		for _, p := range sameAnswer(ra, rr) {
			problems = append(problems, f+": "+p)
		}
		problems = append(problems, v.leaks(c, ra, scopeOwn)...)
	}
	v.verdict("routes", target, c, "an object of the caller's own whatever user_id says; 404 for each id of A's in the body, like a missing one",
		strings.Join(gots, ", "), v.serverError(r, problems), evidence)
}

// removeCreated schedules the removal of an object a probe created (which
// happens only when the server is broken), as the caller.
func (v *verifier) removeCreated(c *caller, r *response) {
	if r == nil || r.status < 200 || r.status >= 300 || c.token == "" {
		return
	}
	var o object
	if json.Unmarshal(r.body, &o) != nil || o.ID == "" {
		return
	}
	prefix, _, _ := strings.Cut(o.ID, "_")
	for kind, id := range v.fx.ids {
		if p, _, _ := strings.Cut(id, "_"); p == prefix {
			owner := c
			if o.UserID == v.a.userID {
				owner = v.a
			}
			v.leftovers = append(v.leftovers, cleanup{c: owner, what: fmt.Sprintf("a %s %s made by %s's probe", kind, o.ID, c.Name), path: deletePath(kind, o.ID)})
			return
		}
	}
}

// morePages follows a list's next_cursor (the first page is r), checking
// every page.
func (v *verifier) morePages(ctx context.Context, c *caller, path string, first *response, sc scope) ([]string, []Exchange) {
	var problems []string
	var evidence []Exchange
	r := first
	for range 20 {
		var page struct {
			NextCursor string `json:"next_cursor"`
		}
		if json.Unmarshal(r.body, &page) != nil || page.NextCursor == "" {
			break
		}
		next, err := v.cl.do(ctx, c, "GET", path+sep(path)+"cursor="+url.QueryEscape(page.NextCursor), nil)
		if err != nil {
			problems = append(problems, v.cl.red.String(err.Error()))
			break
		}
		evidence = append(evidence, next.ex)
		problems = append(problems, v.leaks(c, next, sc)...)
		if next.status != http.StatusOK {
			break
		}
		r = next
	}
	return problems, evidence
}

// filterParams are the query parameters a list may filter by: one per
// kind of A's objects, and user_id.
func (v *verifier) filterParams() []string {
	out := []string{"user_id"}
	for _, k := range kinds {
		out = append(out, k+"_id")
	}
	slices.Sort(out)
	return out
}

// probeFilters calls a list once per filter parameter naming A's object
// and once naming a missing one: the answers must hold the same items (or
// be the same refusal) and nothing of A's. An admin of A's own tenant may
// see A through a user_id filter, so there only the tenant rule holds.
func (v *verifier) probeFilters(ctx context.Context, op operation, c *caller, path string, sc scope) {
	var problems []string
	var evidence []Exchange
	sameTenantAdmin := sc == scopeTenant && c.tenant == v.a.tenant
	// A list that changes between two identical reads (an audit trail
	// that records its own reads) cannot be compared item by item.
	compare := !sameTenantAdmin
	var note []string
	if compare {
		r1, err1 := v.cl.do(ctx, c, "GET", path+sep(path)+"limit=200", nil)
		r2, err2 := v.cl.do(ctx, c, "GET", path+sep(path)+"limit=200", nil)
		if err1 != nil || err2 != nil || r1.status != r2.status || !slices.Equal(itemsOf(r1.body), itemsOf(r2.body)) {
			compare = false
			note = append(note, "The list changes between two identical reads (it records them), so its filtered answers were checked for leaks, not compared item by item.")
		}
	}
	for _, p := range v.filterParams() {
		aID := v.a.userID
		if p != "user_id" {
			aID = v.fx.ids[strings.TrimSuffix(p, "_id")]
		}
		ra, err := v.cl.do(ctx, c, "GET", path+sep(path)+p+"="+url.QueryEscape(aID)+"&limit=200", nil)
		if err != nil {
			problems = append(problems, v.cl.red.String(err.Error()))
			continue
		}
		rr, err := v.cl.do(ctx, c, "GET", path+sep(path)+p+"="+url.QueryEscape(randomLike(aID))+"&limit=200", nil)
		if err != nil {
			problems = append(problems, v.cl.red.String(err.Error()))
			continue
		}
		var found []string
		for _, l := range v.leaks(c, ra, sc) {
			found = append(found, "?"+p+"=<A's>: "+l)
		}
		switch {
		case ra.status != rr.status && !sameTenantAdmin:
			found = append(found, fmt.Sprintf("?%s=<A's> answers %d, ?%s=<missing> %d: the status tells them apart", p, ra.status, p, rr.status))
		case !compare:
		case ra.status < 300:
			if ia, ir := itemsOf(ra.body), itemsOf(rr.body); !slices.Equal(ia, ir) {
				found = append(found, fmt.Sprintf("?%s=<A's> answers %d items, ?%s=<missing> %d other ones: the filter tells A's object apart", p, len(ia), p, len(ir)))
			}
		case !bytes.Equal(ra.body, rr.body):
			found = append(found, fmt.Sprintf("?%s=<A's> and ?%s=<missing> are refused differently", p, p))
		}
		if len(found) > 0 {
			evidence = append(evidence, ra.ex, rr.ex)
		}
		problems = append(problems, found...)
	}
	category := "filters"
	expected := "each filter naming A's object answers like one naming a missing object"
	if sameTenantAdmin {
		expected = "nothing of another tenant's"
	}
	v.verdict(category, op.key(), c, expected, fmt.Sprintf("%d filters", len(v.filterParams())), problems, evidence, note...)
}

// itemsOf is a list answer's items, each as canonical JSON, sorted.
func itemsOf(body []byte) []string {
	var page struct {
		Items []any `json:"items"`
	}
	if json.Unmarshal(body, &page) != nil {
		return nil
	}
	out := make([]string, 0, len(page.Items))
	for _, it := range page.Items {
		b, _ := json.Marshal(it)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// probeAdmin calls an admin route as an admin: it must answer, holding
// nothing of another tenant's (lists: every page, every filter).
func (v *verifier) probeAdmin(ctx context.Context, op operation, c *caller, path string, send func(string, any) (*response, bool)) {
	r, ok := send(path, v.bodyFor(op))
	if !ok {
		return
	}
	problems := v.leaks(c, r, scopeTenant)
	evidence := []Exchange{r.ex}
	if r.status >= 300 {
		problems = append(problems, "the admin was refused: "+r.String())
	}
	if op.List && r.status == http.StatusOK {
		more, pages := v.morePages(ctx, c, path, r, scopeTenant)
		problems = append(problems, more...)
		evidence = append(evidence, pages...)
	}
	var allTenants struct {
		AllTenants bool `json:"all_tenants"`
	}
	if json.Unmarshal(r.body, &allTenants) == nil && allTenants.AllTenants {
		problems = append(problems, "the admin's scope is every tenant: give the token of a tenant admin, not a platform admin")
	}
	v.verdict("admin", op.key(), c, "the admin's own tenant only", r.String(), v.serverError(r, problems), evidence)
	if op.List && r.status == http.StatusOK {
		v.probeFilters(ctx, op, c, path, scopeTenant)
	}
}
