package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// A token-shaped string for tests (not a credential of anything).
const testJWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.c2lnbmF0dXJlLWJ5dGVzLXRoYXQtYXJlLWxvbmctZW5vdWdoLWZvci1hLXRlc3Q"

func TestRedactor(t *testing.T) {
	pat := "idf_pat_0123456789abcdefghij"
	other := "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJib2IifQ.AAAABBBBCCCCDDDD" // a JWT the verifier was never given
	r := newRedactor(testJWT, pat, "")
	parts := strings.Split(testJWT, ".")
	for _, in := range []string{
		"Bearer " + testJWT,
		`{"token":"` + testJWT + `"}`,
		"payload alone: " + parts[1],
		"signature alone: " + parts[2],
		"a PAT: " + pat + " and another idf_pat_zzzzzzzzzzzzzzzzzzz",
		"someone else's " + other,
	} {
		out := r.String(in)
		for _, secret := range []string{testJWT, parts[1], parts[2], pat, "idf_pat_zzzz", other} {
			if strings.Contains(out, secret) {
				t.Errorf("redact(%q) = %q: still holds %q", in, out, secret)
			}
		}
		if !strings.Contains(out, "[redacted") {
			t.Errorf("redact(%q) = %q: no redaction mark", in, out)
		}
	}
	if got := r.String(`{"id":"app_abc","name":"plain text"}`); got != `{"id":"app_abc","name":"plain text"}` {
		t.Errorf("plain text changed: %q", got)
	}
	h := http.Header{
		"Authorization":          {"Bearer " + testJWT},
		"Sec-Websocket-Protocol": {"idflow.v1, bearer." + testJWT},
		"Set-Cookie":             {"__Host-idflow_session=secret-session-value; Path=/"},
		"X-Echo":                 {"an echo of " + testJWT},
	}
	got := strings.Join(r.headers(h), "\n")
	want := "Authorization: Bearer [redacted]\nSec-Websocket-Protocol: idflow.v1, bearer.[redacted]\nSet-Cookie: [redacted]\nX-Echo: an echo of [redacted token]"
	if got != want {
		t.Errorf("headers:\n%s\nwant:\n%s", got, want)
	}
}

// TestRateIsBounded: with a fake clock, 101 requests at 20 per second
// wait exactly 100 × 50 ms between them.
func TestRateIsBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var slept time.Duration
	cl := &client{lim: rate.NewLimiter(20, 1), now: func() time.Time { return now },
		sleep: func(_ context.Context, d time.Duration) error { slept += d; now = now.Add(d); return nil }}
	for range 101 {
		if err := cl.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if slept < 5*time.Second-time.Millisecond || slept > 5*time.Second+time.Millisecond {
		t.Fatalf("101 requests at 20/s waited %v; want 5s", slept)
	}
}

// fakeServer answers /readyz with body and counts every request.
type fakeServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newFakeServer(t *testing.T, readyz string) *fakeServer {
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		if r.URL.Path == "/readyz" && readyz != "" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(readyz))
			return
		}
		http.Error(w, "not here", http.StatusNotFound)
	}))
	t.Cleanup(f.Close)
	return f
}

var testTokens = Tokens{A: "token-of-a", B: "token-of-b", C: "token-of-c"}

// TestRefusesUnlessAllowed: a server whose /readyz does not invite
// verification gets GET /readyz and nothing else.
func TestRefusesUnlessAllowed(t *testing.T) {
	for _, readyz := range []string{`{"status":"ready","verify":"off"}`, `{"status":"ready"}`, `not json`, ``} {
		f := newFakeServer(t, readyz)
		_, err := Run(t.Context(), Config{Server: f.URL, Tokens: testTokens})
		if !errors.Is(err, ErrNotAllowed) {
			t.Errorf("/readyz %q: %v; want ErrNotAllowed", readyz, err)
		}
		if len(f.seen) != 1 || f.seen[0] != "GET /readyz" {
			t.Errorf("/readyz %q: the server saw %v; want only GET /readyz", readyz, f.seen)
		}
	}
}

type refuseTransport struct{ t *testing.T }

func (rt refuseTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.t.Errorf("a request to %s was sent", r.URL)
	return nil, errors.New("no network in this test")
}

// TestRefusesRemoteWithoutYes: a server beyond loopback needs AllowRemote;
// without it nothing is sent.
func TestRefusesRemoteWithoutYes(t *testing.T) {
	hc := &http.Client{Transport: refuseTransport{t}}
	for _, server := range []string{"https://idflow.example.com", "http://10.0.0.5:8080", "http://[2001:db8::1]/", "http://127.0.0.1.example.com"} {
		if _, err := Run(t.Context(), Config{Server: server, Tokens: testTokens, HTTPClient: hc}); !errors.Is(err, ErrRemote) {
			t.Errorf("%s: %v; want ErrRemote", server, err)
		}
	}
	for _, server := range []string{"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "http://app.idflow.localhost:1"} {
		if _, err := newVerifier(Config{Server: server, Tokens: testTokens, HTTPClient: hc}); err != nil {
			t.Errorf("%s: %v; loopback needs no --yes", server, err)
		}
	}
	if _, err := newVerifier(Config{Server: "https://idflow.example.com", Tokens: testTokens, HTTPClient: hc, AllowRemote: true}); err != nil {
		t.Errorf("with AllowRemote: %v", err)
	}
}

func TestConfigRefusals(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no server scheme": {Server: "127.0.0.1:8080", Tokens: testTokens},
		"ftp":              {Server: "ftp://127.0.0.1", Tokens: testTokens},
		"no C":             {Server: "http://127.0.0.1", Tokens: Tokens{A: "a", B: "b"}},
		"A is B":           {Server: "http://127.0.0.1", Tokens: Tokens{A: "a", B: "a", C: "c"}},
		"rate too high":    {Server: "http://127.0.0.1", Tokens: testTokens, Rate: MaxRate + 1},
		"negative rate":    {Server: "http://127.0.0.1", Tokens: testTokens, Rate: -1},
		"client timeout":   {Server: "http://127.0.0.1", Tokens: testTokens, HTTPClient: &http.Client{Timeout: time.Second}},
	} {
		if _, err := newVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRandomLike(t *testing.T) {
	for _, id := range []string{"app_qlshhnrr2plpnlsflmpds677se", "0a11ce00-0000-4000-8000-000000000001", "dev-alice", "b.Zx81-QQa", "run_ABCdef012"} {
		got := randomLike(id)
		if got == id || len(got) != len(id) {
			t.Errorf("randomLike(%q) = %q", id, got)
			continue
		}
		for i := range id {
			a, b := id[i], got[i]
			same := func(f func(byte) bool) bool { return f(a) == f(b) }
			if !same(isDigit) || !same(isHexLower) || !same(isHexUpper) || !same(isLower) || !same(isUpper) || (!isAlnum(a) && a != b) {
				t.Errorf("randomLike(%q) = %q: character %d changed class", id, got, i)
				break
			}
		}
		if p, _, ok := strings.Cut(id, "_"); ok && !strings.HasPrefix(got, p+"_") {
			t.Errorf("randomLike(%q) = %q: prefix lost", id, got)
		}
	}
	if got := randomLike("a.sess"); !strings.HasPrefix(got, "a.") {
		t.Errorf("randomLike(a.sess) = %q: a replica tag must stay", got)
	}
}

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isHexLower(c byte) bool { return c >= 'a' && c <= 'f' }
func isHexUpper(c byte) bool { return c >= 'A' && c <= 'F' }
func isLower(c byte) bool    { return c >= 'a' && c <= 'z' }
func isUpper(c byte) bool    { return c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool    { return isDigit(c) || isLower(c) || isUpper(c) }

func TestTamper(t *testing.T) {
	got := tamper(testJWT)
	a, b := strings.Split(testJWT, "."), strings.Split(got, ".")
	if len(b) != 3 || a[0] != b[0] || a[1] != b[1] || a[2] == b[2] {
		t.Fatalf("tamper changed more or less than the signature: %q", got)
	}
	sa, _ := base64.RawURLEncoding.DecodeString(a[2])
	sb, err := base64.RawURLEncoding.DecodeString(b[2])
	if err != nil || len(sa) != len(sb) {
		t.Fatalf("the tampered signature is not the same length of base64url: %v", err)
	}
	diff := 0
	for i := range sa {
		if sa[i] != sb[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("%d bytes of the signature changed; want 1", diff)
	}
	if tamper("idf_pat_abcdef") == "idf_pat_abcdef" {
		t.Fatal("a personal access token was not changed")
	}
}

func TestParseOpenAPI(t *testing.T) {
	doc := `{"openapi":"3.1.0","paths":{
	  "/api/v1/sessions":{"get":{"x-access":"user","parameters":[{"name":"limit","in":"query"},{"name":"cursor","in":"query"}],"responses":{"200":{},"401":{}}},
	                      "post":{"x-access":"user","requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/SessionIn"}}}},"responses":{"201":{},"400":{}}}},
	  "/api/v1/apps/{app_id}":{"delete":{"x-access":"user","responses":{"204":{},"404":{}}},"summary":"not an operation"}},
	  "components":{"schemas":{"SessionIn":{"type":"object","required":["title","app_id"],"properties":{"title":{"type":"string"},"app_id":{"type":"string"},"agent_id":{"type":"string"}}}}}}`
	ops, err := parseOpenAPI([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range ops {
		keys = append(keys, o.key())
	}
	if strings.Join(keys, ",") != "DELETE /api/v1/apps/{app_id},GET /api/v1/sessions,POST /api/v1/sessions" {
		t.Fatalf("operations %v", keys)
	}
	del, list, create := ops[0], ops[1], ops[2]
	if del.Success != 204 || len(del.Params) != 1 || del.Params[0] != "app_id" || del.Access != "user" {
		t.Errorf("delete: %+v", del)
	}
	if !list.List || list.Success != 200 || list.create() {
		t.Errorf("list: %+v", list)
	}
	if !create.create() || strings.Join(create.IDFields, ",") != "agent_id,app_id" {
		t.Errorf("create: %+v", create)
	}
	if ex := create.example("probe"); ex["title"] != "probe" || ex["app_id"] != nil {
		t.Errorf("example body %v: want the required title and no id", ex)
	}
	if _, err := parseOpenAPI([]byte(`{"paths":{}}`)); err == nil {
		t.Error("an empty document was accepted")
	}
}

// testVerifier is a verifier with callers and a fixture, for the leak
// rules: A and B of tenant t-one, C and the admin of t-two.
func testVerifier(t *testing.T) *verifier {
	t.Helper()
	v, err := newVerifier(Config{Server: "http://127.0.0.1", Tokens: Tokens{A: "a", B: "b", C: "c", Admin: "d"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string][2]string{nameA: {"u-a", "t-one"}, nameB: {"u-b", "t-one"}, nameC: {"u-c", "t-two"}, nameAdmin: {"u-admin", "t-two"}} {
		v.byName[name].userID, v.byName[name].tenant = id[0], id[1]
	}
	v.fx = newFixture(v)
	v.fx.add("fact", "fct_aaaaaaaaaaaa")
	v.fx.cFact = "fct_cccccccccccc"
	v.fx.label(v.fx.cFact, "C's fact", nameC)
	return v
}

func answer(body string) *response {
	return &response{status: 200, header: http.Header{"Content-Type": {"application/json"}}, body: []byte(body)}
}

func TestLeaks(t *testing.T) {
	v := testVerifier(t)
	fx := v.fx
	b, c, admin := v.byName[nameB], v.byName[nameC], v.byName[nameAdmin]
	// B names A's user id in its own tool arguments (the attack).
	v.noteSent(b, `/tool search_memory {"user_id":"u-a"}`)
	for _, tc := range []struct {
		name   string
		who    *caller
		body   string
		sc     scope
		leaked bool
	}{
		{"own object", b, `{"items":[{"id":"fct_bbb","user_id":"u-b","content":"mine"}]}`, scopeOwn, false},
		{"A's secret word", b, `{"items":[{"id":"fct_x","user_id":"u-b","content":"` + fx.secret + `"}]}`, scopeOwn, true},
		{"A's object", b, `{"id":"fct_x","user_id":"u-a"}`, scopeOwn, true},
		{"A's fact id", b, `{"note":"see fct_aaaaaaaaaaaa"}`, scopeOwn, true},
		{"A named in the caller's own tool arguments", b, `{"steps":[{"tool":"search_memory","arguments":{"user_id":"u-a"},"result":{"items":[]}}]}`, scopeOwn, false},
		{"C's own fact", c, `{"id":"fct_cccccccccccc","user_id":"u-c","content":"` + fx.cSecret + `"}`, scopeOwn, false},
		{"C's fact to B", b, `{"content":"` + fx.cSecret + `"}`, scopeOwn, true},
		{"an object without credentials", v.byName[nameNone], `{"user_id":"u-b"}`, scopeNothing, true},
		{"the admin's own tenant", admin, `{"items":[{"user_id":"u-c","tenant_id":"t-two"}]}`, scopeTenant, false},
		{"A's user to another tenant's admin", admin, `{"items":[{"user_id":"u-a","tenant_id":"t-two"}]}`, scopeTenant, true},
		{"another tenant's item", admin, `{"items":[{"user_id":"someone","tenant_id":"t-one"}]}`, scopeTenant, true},
	} {
		got := v.leaks(tc.who, answer(tc.body), tc.sc)
		if (len(got) > 0) != tc.leaked {
			t.Errorf("%s: leaks %v; want leaked=%v", tc.name, got, tc.leaked)
		}
	}
	// An id the caller named itself may come back (its audit trail).
	v.noteSent(b, "/api/v1/facts/fct_aaaaaaaaaaaa")
	if got := v.leaks(b, answer(`{"resource":"fact/fct_aaaaaaaaaaaa"}`), scopeOwn); len(got) != 0 {
		t.Errorf("an id B sent itself: %v", got)
	}
}

// TestReportWriters: the summary names each failure (route, caller, what
// leaked); the HTML is self-contained and escapes what servers answered;
// the JSON reads back.
func TestReportWriters(t *testing.T) {
	v := testVerifier(t)
	v.pass("routes", "GET /api/v1/apps/{app_id}", nameB, "404", "404, the same as a missing id")
	v.fail("routes", "GET /api/v1/facts/{fact_id}", nameC, "404", "200 OK",
		[]Exchange{{Caller: nameC, Method: "GET", URL: "http://127.0.0.1/api/v1/facts/fct_x", Status: 200, ResponseBody: `<script>alert(1)</script>`}},
		"carries A's secret word")
	v.skip("mcp", "MCP tools/call tickets__list", nameB, "no case")
	v.rep.finish(time.Now(), 3)
	if v.rep.Passed {
		t.Fatal("a report with a failure passed")
	}
	var sum bytes.Buffer
	if err := v.rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum.String(), "FAIL GET /api/v1/facts/{fact_id} as C: 200 OK (want 404) — carries A's secret word") || !strings.Contains(sum.String(), "FAIL: 1 of 3 checks failed") {
		t.Errorf("summary:\n%s", sum.String())
	}
	var page bytes.Buffer
	if err := v.rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{"FAIL", "GET /api/v1/facts/{fact_id}", "carries A&#39;s secret word", "&lt;script&gt;alert(1)&lt;/script&gt;", "<style>"} {
		if !strings.Contains(html, want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	for _, never := range []string{"<script", "<link", "src=\"http", "href=\"http"} {
		if strings.Contains(html, never) {
			t.Errorf("the HTML report holds %q: it must be self-contained and inert", never)
		}
	}
	var js bytes.Buffer
	if err := v.rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Checks) != 3 || back.Passed || back.Totals().Failed != 1 {
		t.Fatalf("JSON round trip: %v %+v", err, back.Summary)
	}
}
