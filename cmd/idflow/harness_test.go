package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idflow/idflow/auth/authtest"
)

// This file is the shared harness for end-to-end API tests: idflow in
// PRODUCTION mode (run() with an OpenID issuer, no --dev) against an
// authtest.Issuer, tokens for named callers, and a small HTTP client that
// fails the test on any 5xx.

// Named callers of a prodServer.
const (
	callerAlice   = "alice"   // user, tenant t-one
	callerBob     = "bob"     // user, tenant t-one
	callerCarol   = "carol"   // user, tenant t-two
	callerAdmin   = "admin"   // user with the admin role, tenant t-one
	callerAdmin2  = "admin2"  // user with the admin role, tenant t-two
	callerRoot    = "root"    // user with the platform admin role, tenant t-ops (nobody else's)
	callerApp     = "app"     // app-only token (idtyp=app) of the allowlisted client
	callerExpired = "expired" // alice's token, expired
	callerNone    = "none"    // no credentials at all
)

// testAppClientID is the app-only client allowlisted in IDFLOW_INTERNAL_CLIENTS.
const testAppClientID = "idflow-test-monitor"

// testUser is a user of the test issuer.
type testUser struct {
	oid, tenant, name string
	roles             []string
}

var testUsers = map[string]testUser{
	callerAlice:  {oid: "0a11ce00-0000-4000-8000-000000000001", tenant: "t-one", name: "Alice Example"},
	callerBob:    {oid: "0b0b0000-0000-4000-8000-000000000002", tenant: "t-one", name: "Bob Example"},
	callerCarol:  {oid: "0ca20100-0000-4000-8000-000000000003", tenant: "t-two", name: "Carol Example"},
	callerAdmin:  {oid: "0ad31200-0000-4000-8000-000000000004", tenant: "t-one", name: "Admin Example", roles: []string{"admin"}},
	callerAdmin2: {oid: "0ad31200-0000-4000-8000-000000000005", tenant: "t-two", name: "Admin Two", roles: []string{"admin"}},
	callerRoot:   {oid: "0f007000-0000-4000-8000-000000000006", tenant: "t-ops", name: "Root Example", roles: []string{testPlatformRole}},
}

// testPlatformRole is IDFLOW_PLATFORM_ADMIN_ROLE of every prodServer.
const testPlatformRole = "platform-admin"

// prodServer is idflow serving in production mode against a test issuer.
type prodServer struct {
	*runningServer
	Issuer *authtest.Issuer

	mu     sync.Mutex
	tokens map[string]string
	reqSeq atomic.Int64
}

// startProdIdflow starts `idflow serve` in production mode: IDFLOW_OIDC_ISSUER
// is a fresh authtest.Issuer, IDFLOW_OIDC_AUDIENCE its audience, the data dir
// a temporary one, the port free, IDFLOW_INTERNAL_CLIENTS the test app
// client, IDFLOW_PLATFORM_ADMIN_ROLE the role of callerRoot. extra adds or
// overrides variables. The server stops when the test ends.
func startProdIdflow(t *testing.T, extra map[string]string) *prodServer {
	t.Helper()
	iss := authtest.NewIssuer(t)
	env := map[string]string{
		"IDFLOW_OIDC_ISSUER":      iss.Issuer(),
		"IDFLOW_OIDC_AUDIENCE":    iss.Audience(),
		"IDFLOW_DATA_DIR":         t.TempDir(),
		"IDFLOW_INTERNAL_CLIENTS": testAppClientID,
		"IDFLOW_LOG_LEVEL":        "error",
		// Entra-shaped tokens from a local issuer: oid is only the default
		// on Entra hosts (usertoken_test.go shows the sub default).
		"IDFLOW_OIDC_USER_CLAIM": "oid",

		"IDFLOW_PLATFORM_ADMIN_ROLE": testPlatformRole,
	}
	for k, v := range extra {
		env[k] = v
	}
	srv := startIdflow(t, env)
	if strings.Contains(srv.stdout.String(), "DEV MODE") {
		t.Fatal("the harness started idflow in dev mode")
	}
	return &prodServer{runningServer: srv, Issuer: iss, tokens: map[string]string{}}
}

// Token returns a bearer token for a named caller (see the caller
// constants); callerNone has none (""). Tokens are minted once per server.
func (s *prodServer) Token(t testing.TB, who string) string {
	t.Helper()
	if who == callerNone {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok, ok := s.tokens[who]; ok {
		return tok
	}
	var claims authtest.Claims
	switch who {
	case callerApp:
		claims = s.Issuer.EntraV2App(authtest.EntraApp{
			TenantID: "t-one", ClientID: testAppClientID, Issuer: s.Issuer.Issuer(), IDTyp: true,
		})
	case callerExpired:
		now := s.Issuer.Now()
		claims = s.userClaims(t, callerAlice).
			With("iat", now.Add(-2*time.Hour).Unix()).
			With("nbf", now.Add(-2*time.Hour).Unix()).
			With("exp", now.Add(-time.Hour).Unix())
	default:
		claims = s.userClaims(t, who)
	}
	tok := s.Issuer.Sign(claims)
	s.tokens[who] = tok
	return tok
}

func (s *prodServer) userClaims(t testing.TB, who string) authtest.Claims {
	u, ok := testUsers[who]
	if !ok {
		t.Fatalf("no test user %q", who)
	}
	login := strings.ToLower(strings.Fields(u.name)[0]) + "@" + u.tenant + ".example"
	return s.Issuer.EntraV2User(authtest.EntraUser{
		TenantID: u.tenant, ObjectID: u.oid, Name: u.name, PreferredUsername: login,
		Roles: u.roles, Issuer: s.Issuer.Issuer(), IDTyp: true,
	})
}

// UserID is the user id idflow derives for a named user (the oid claim).
func (s *prodServer) UserID(t testing.TB, who string) string {
	t.Helper()
	u, ok := testUsers[who]
	if !ok {
		t.Fatalf("no test user %q", who)
	}
	return u.oid
}

// RequestID returns a fresh, valid X-Request-Id, so a test can find the
// audit event of one request.
func (s *prodServer) RequestID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), s.reqSeq.Add(1))
}

// reply is an HTTP answer, read completely.
type reply struct {
	Method, Path string
	Status       int
	Header       http.Header
	Body         []byte
}

func (r reply) String() string {
	b := r.Body
	if len(b) > 600 {
		b = append(b[:600:600], "…"...)
	}
	return fmt.Sprintf("%s %s → %d %s", r.Method, r.Path, r.Status, b)
}

// JSON decodes the body into v, failing the test if it is not JSON.
func (r reply) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("%s: body is not the expected JSON: %v", r, err)
	}
}

// header is one extra request header.
type header struct{ name, value string }

// Do sends a request. body may be nil, []byte or string (sent as is, as
// application/json unless a Content-Type header is given), or any other
// value (sent as its JSON). A 5xx answer fails the test: no input may make
// idflow answer 500.
func (s *prodServer) Do(t testing.TB, method, path, token string, body any, headers ...header) reply {
	t.Helper()
	var rd io.Reader
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	if body != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		req.Header.Set(h.name, h.value)
	}
	resp, err := harnessClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	r := reply{Method: method, Path: path, Status: resp.StatusCode, Header: resp.Header, Body: data}
	if r.Status >= 500 {
		t.Errorf("%s: a server error; no request may cause one", r)
	}
	return r
}

// As sends a request as a named caller.
func (s *prodServer) As(t testing.TB, who, method, path string, body any, headers ...header) reply {
	t.Helper()
	return s.Do(t, method, path, s.Token(t, who), body, headers...)
}

var harnessClient = &http.Client{
	Timeout: 60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// mustStatus fails the test unless r has the status want.
func mustStatus(t testing.TB, r reply, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s; want %d", r, want)
	}
}

// problemDoc is an RFC 9457 answer.
type problemDoc struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// checkProblem requires r to be an application/problem+json answer with
// status want and every member set; it returns the document.
func checkProblem(t testing.TB, r reply, want int) problemDoc {
	t.Helper()
	var p problemDoc
	if r.Status != want {
		t.Errorf("%s; want %d", r, want)
		return p
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/problem+json" {
		t.Errorf("%s: Content-Type %q; want application/problem+json", r, r.Header.Get("Content-Type"))
		return p
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &members); err != nil {
		t.Errorf("%s: problem body is not a JSON object: %v", r, err)
		return p
	}
	for _, m := range []string{"type", "title", "status", "detail"} {
		if _, ok := members[m]; !ok {
			t.Errorf("%s: problem without %q", r, m)
		}
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Errorf("%s: %v", r, err)
		return p
	}
	if p.Type == "" || p.Title == "" || p.Detail == "" || p.Status != want {
		t.Errorf("%s: problem %+v: type, title, detail must be set and status %d", r, p, want)
	}
	return p
}

// listPage is one page of a list answer.
type listPage struct {
	Items      []json.RawMessage `json:"items"`
	NextCursor string            `json:"next_cursor"`
}

// listAll follows next_cursor through every page of a list route as who.
func (s *prodServer) listAll(t testing.TB, who, path string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	cursor := ""
	for range 1000 {
		p := path
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		p += sep + "limit=200"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := s.As(t, who, "GET", p, nil)
		mustStatus(t, r, http.StatusOK)
		var pg listPage
		r.JSON(t, &pg)
		out = append(out, pg.Items...)
		if pg.NextCursor == "" {
			return out
		}
		cursor = pg.NextCursor
	}
	t.Fatalf("GET %s: more than 1000 pages", path)
	return nil
}

// auditEvent is the part of an audit event the tests read.
type auditEvent struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Action    string `json:"action"`
	Resource  string `json:"resource"`
	Outcome   string `json:"outcome"`
	RequestID string `json:"request_id"`
	Detail    string `json:"detail"`
}

// auditEvents reads a whole audit list (/api/v1/audit or /api/v1/admin/audit) as who.
func (s *prodServer) auditEvents(t testing.TB, who, path string) []auditEvent {
	t.Helper()
	var out []auditEvent
	for _, raw := range s.listAll(t, who, path) {
		var e auditEvent
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("GET %s: audit event %s: %v", path, raw, err)
		}
		out = append(out, e)
	}
	return out
}

// findAudit returns the events of requestID in events.
func findAudit(events []auditEvent, requestID string) []auditEvent {
	var out []auditEvent
	for _, e := range events {
		if e.RequestID == requestID {
			out = append(out, e)
		}
	}
	return out
}

// object is the part of any stored object the tests read.
type object struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
}

// create POSTs body to path as who, requires 201 (or want, if given) and
// returns the object's id.
func (s *prodServer) create(t testing.TB, who, path string, body any) string {
	t.Helper()
	want := http.StatusCreated
	if strings.HasSuffix(path, "/runs") {
		want = http.StatusAccepted
	}
	r := s.As(t, who, "POST", path, body)
	mustStatus(t, r, want)
	var o object
	r.JSON(t, &o)
	if o.ID == "" {
		t.Fatalf("%s: no id", r)
	}
	if o.UserID != s.UserID(t, who) {
		t.Fatalf("%s: user_id %q; want the caller %q", r, o.UserID, s.UserID(t, who))
	}
	return o.ID
}

// waitRun polls a run as who until it reaches a terminal status.
func (s *prodServer) waitRun(t testing.TB, who, runID string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	pause := 5 * time.Millisecond
	for {
		r := s.As(t, who, "GET", "/api/v1/runs/"+runID, nil)
		mustStatus(t, r, http.StatusOK)
		var run struct {
			Status string `json:"status"`
		}
		r.JSON(t, &run)
		switch run.Status {
		case "succeeded", "failed", "cancelled":
			return run.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %q after 30s", runID, run.Status)
		}
		time.Sleep(pause) // polling with a deadline, not timing
		if pause < 100*time.Millisecond {
			pause *= 2
		}
	}
}
