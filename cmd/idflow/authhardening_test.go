package main

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
)

// HTTP-level proofs of the authentication rules (ID tokens as bearers,
// the user claim, mutable claims, cookie and proxy-header writes):
// idflow serving for real, attacked over HTTP. docs/SECURITY.md names
// each test.

// rawDo sends exactly the headers given (repeated ones too) and no others
// but the transport's own: no default Content-Type.
func rawDo(t testing.TB, method, target string, hdr http.Header, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = append(req.Header[k], vs...)
	}
	resp, err := harnessClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(target)
	r := reply{Method: method, Path: u.Path, Status: resp.StatusCode, Header: resp.Header, Body: b}
	if r.Status >= 500 {
		t.Errorf("%s: a server error; no request may cause one", r)
	}
	return r
}

// ---- item 8: an ID token sent as a bearer ----

// TestIDTokenAsBearerRefused: a single-page app may send its Entra ID
// token, which could be taken for an app-only token. It is refused with 401 and a message
// saying what to send — whether its aud is the SPA's or, with one app
// registration for both, the API's — and writes nothing.
func TestIDTokenAsBearerRefused(t *testing.T) {
	s := startProdIdflow(t, nil)
	u := testUsers[callerAlice]
	for name, aud := range map[string]string{"aud = the API": s.Issuer.Audience(), "aud = the SPA": "spa-client"} {
		t.Run(name, func(t *testing.T) {
			id := s.Issuer.Sign(s.Issuer.EntraV2IDToken(authtest.EntraUser{TenantID: u.tenant, ObjectID: u.oid,
				Name: u.name, Issuer: s.Issuer.Issuer(), ClientID: "spa-client", Audience: aud}))
			for _, r := range []reply{
				s.Do(t, "GET", "/api/v1/me", id, nil),
				s.Do(t, "POST", "/api/v1/facts", id, map[string]string{"content": "written with an ID token"}),
			} {
				p := checkProblem(t, r, http.StatusUnauthorized)
				if want := "send an access token for " + s.Issuer.Audience() + ", not an ID token"; p.Detail != want {
					t.Fatalf("%s: detail %q; want %q", r, p.Detail, want)
				}
				if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Fatalf("%s: WWW-Authenticate %q", r, r.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	for _, raw := range s.listAll(t, callerAlice, "/api/v1/facts") {
		if bytes.Contains(raw, []byte("written with an ID token")) {
			t.Fatal("an ID token wrote a fact")
		}
	}
	// The real app-only token is still an app, and alice's access token alice.
	var me struct {
		UserID string `json:"user_id"`
		Kind   string `json:"kind"`
	}
	s.As(t, callerApp, "GET", "/api/v1/me", nil).JSON(t, &me)
	if me.Kind != "app" {
		t.Fatalf("the app-only token is %+v", me)
	}
	s.As(t, callerAlice, "GET", "/api/v1/me", nil).JSON(t, &me)
	if me.Kind != "user" || me.UserID != u.oid {
		t.Fatalf("alice's access token is %+v", me)
	}
}

// TestAcceptIDTokensMode: IDFLOW_OIDC_ACCEPT_ID_TOKENS=true, the weaker
// mode, lets an ID token act as its user (the oid, with no scope), for an
// aud in IDFLOW_OIDC_AUDIENCE only; it cannot be combined with a required
// scope.
func TestAcceptIDTokensMode(t *testing.T) {
	s := startProdIdflow(t, map[string]string{
		"IDFLOW_OIDC_ACCEPT_ID_TOKENS": "true",
		"IDFLOW_OIDC_AUDIENCE":         authtest.DefaultAudience + ",spa-client",
	})
	u := testUsers[callerAlice]
	idFor := func(client string) string {
		return s.Issuer.Sign(s.Issuer.EntraV2IDToken(authtest.EntraUser{TenantID: u.tenant, ObjectID: u.oid,
			Issuer: s.Issuer.Issuer(), ClientID: client}))
	}
	var me struct {
		UserID string   `json:"user_id"`
		Kind   string   `json:"kind"`
		Scopes []string `json:"scopes"`
	}
	r := s.Do(t, "GET", "/api/v1/me", idFor("spa-client"), nil)
	mustStatus(t, r, http.StatusOK)
	r.JSON(t, &me)
	if me.UserID != u.oid || me.Kind != "user" || len(me.Scopes) != 0 {
		t.Fatalf("the ID token acts as %+v; want alice's oid, a user, no scopes", me)
	}
	// What it writes is alice's, seen with her access token.
	r = s.Do(t, "POST", "/api/v1/facts", idFor("spa-client"), map[string]string{"content": "via the SPA's ID token"})
	mustStatus(t, r, http.StatusCreated)
	found := false
	for _, raw := range s.listAll(t, callerAlice, "/api/v1/facts") {
		found = found || bytes.Contains(raw, []byte("via the SPA's ID token"))
	}
	if !found {
		t.Fatal("alice does not see the fact her ID token wrote")
	}
	// Another client's ID token is not for this API.
	mustStatus(t, s.Do(t, "GET", "/api/v1/me", idFor("another-spa"), nil), http.StatusUnauthorized)

	_, _, err := runCmd(t, map[string]string{"IDFLOW_OIDC_ISSUER": "http://127.0.0.1:1", "IDFLOW_OIDC_AUDIENCE": "api://x",
		"IDFLOW_OIDC_ACCEPT_ID_TOKENS": "true", "IDFLOW_OIDC_REQUIRED_SCOPE": "access_as_user", "IDFLOW_DATA_DIR": t.TempDir()}, "serve")
	if err == nil || !strings.Contains(err.Error(), "IDFLOW_OIDC_ACCEPT_ID_TOKENS") {
		t.Fatalf("accept ID tokens with a required scope: %v; want a refusal naming the variable", err)
	}
}

// ---- item 9: the user claim ----

// TestUserClaimDefault: with IDFLOW_OIDC_USER_CLAIM unset, an issuer that
// is not Entra ID names its users by sub — an oid claim there is just a
// claim — and mutable claims are refused at start, in production and dev.
func TestUserClaimDefault(t *testing.T) {
	s := startProdIdflow(t, map[string]string{"IDFLOW_OIDC_USER_CLAIM": ""})
	claims := s.userClaims(t, callerAlice)
	var me struct {
		UserID string `json:"user_id"`
	}
	mustStatus(t, s.Do(t, "GET", "/api/v1/me", s.Issuer.Sign(claims), nil), http.StatusOK)
	s.Do(t, "GET", "/api/v1/me", s.Issuer.Sign(claims), nil).JSON(t, &me)
	if me.UserID != claims["sub"] || me.UserID == claims["oid"] {
		t.Fatalf("user %q; want the sub %q, not the oid", me.UserID, claims["sub"])
	}
	// A token with an oid and no sub names nobody here.
	r := s.Do(t, "GET", "/api/v1/me", s.Issuer.Sign(claims.Without("sub")), nil)
	checkProblem(t, r, http.StatusUnauthorized)

	for _, claim := range []string{"email", "preferred_username", "upn", "name", "unique_name"} {
		for _, env := range []map[string]string{
			{"IDFLOW_OIDC_ISSUER": "http://127.0.0.1:1", "IDFLOW_OIDC_AUDIENCE": "api://x", "IDFLOW_OIDC_USER_CLAIM": "sub," + claim},
			{"IDFLOW_OIDC_USER_CLAIM": claim},
		} {
			env["IDFLOW_DATA_DIR"] = t.TempDir()
			args := []string{"serve"}
			if env["IDFLOW_OIDC_ISSUER"] == "" {
				args = append(args, "--dev")
			}
			_, _, err := runCmd(t, env, args...)
			if err == nil || !strings.Contains(err.Error(), "IDFLOW_OIDC_USER_CLAIM") || !strings.Contains(err.Error(), claim) {
				t.Fatalf("%s %v: %v; want a refusal naming the variable and the claim", claim, args, err)
			}
		}
	}
}

// ---- item 10: writes from another site with an ambient credential ----

// sessionWithCSRF signs login in through the dev server's browser login and
// returns the cookie and its CSRF token.
func sessionWithCSRF(t *testing.T, base, login string) (*http.Cookie, string) {
	t.Helper()
	ck := runsBrowserSession(t, base, login)
	r := rawDo(t, "GET", base+"/api/v1/me", http.Header{"Cookie": {ck.Name + "=" + ck.Value}}, "")
	mustStatus(t, r, http.StatusOK)
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	r.JSON(t, &me)
	if me.CSRF == "" {
		t.Fatalf("no CSRF token for the session: %s", r)
	}
	return ck, me.CSRF
}

// TestCrossSiteCookieWrites: the session cookie rides along with a request
// another site's page makes. With a valid CSRF token even (leaked, say), a
// write whose Origin is foreign ("null" too) or whose Sec-Fetch-Site is
// cross-site is refused with 403 and audited; nothing is written. Our own
// origin, a CORS origin, and clients that send neither header pass; bearer
// tokens are not ambient and pass whatever their Origin.
func TestCrossSiteCookieWrites(t *testing.T) {
	t.Parallel()
	const cors = "https://spa.idflow.test"
	srv := startIdflow(t, map[string]string{"IDFLOW_CORS_ORIGINS": cors, "IDFLOW_LOG_LEVEL": "error"}, "--dev")
	ck, csrf := sessionWithCSRF(t, srv.URL, "alice")
	reqSeq := 0
	post := func(extra map[string]string, content string) (reply, string) {
		reqSeq++
		id := "xsite-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + string(rune('a'+reqSeq))
		h := http.Header{"Cookie": {ck.Name + "=" + ck.Value}, "X-Csrf-Token": {csrf},
			"Content-Type": {"application/json"}, "X-Request-Id": {id}}
		for k, v := range extra {
			h.Set(k, v)
		}
		return rawDo(t, "POST", srv.URL+"/api/v1/facts", h, `{"content":"`+content+`"}`), id
	}
	var refusedIDs []string
	for i, extra := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Origin": "null"},
		{"Origin": "http://127.0.0.1:1"}, // same host, another port: same site, another origin
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": srv.URL, "Sec-Fetch-Site": "cross-site"},
	} {
		r, id := post(extra, "forged "+string(rune('0'+i)))
		p := checkProblem(t, r, http.StatusForbidden)
		if !strings.Contains(p.Detail, "must come from this site") {
			t.Fatalf("%v: %s", extra, r)
		}
		refusedIDs = append(refusedIDs, id)
	}
	for _, extra := range []map[string]string{{}, {"Origin": srv.URL}, {"Origin": cors}, {"Sec-Fetch-Site": "same-origin"}} {
		r, _ := post(extra, "fine")
		mustStatus(t, r, http.StatusCreated)
	}
	facts := rawDo(t, "GET", srv.URL+"/api/v1/facts?limit=200", http.Header{"Cookie": {ck.Name + "=" + ck.Value}}, "")
	if bytes.Contains(facts.Body, []byte("forged")) {
		t.Fatalf("a cross-site write landed: %s", facts.Body)
	}
	// Bearer tokens: no ambient credential, no Origin rule.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := devToken(ctx, srv.URL, "alice", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	r := rawDo(t, "POST", srv.URL+"/api/v1/facts", http.Header{"Authorization": {"Bearer " + tok},
		"Content-Type": {"application/json"}, "Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}, `{"content":"bearer"}`)
	mustStatus(t, r, http.StatusCreated)

	// Forward-auth asks about a POST from another site: refused the same
	// way (X-Original-Method, and the client's Origin the proxy copied).
	validate := func(origin string) reply {
		return rawDo(t, "GET", srv.URL+"/auth/validate", http.Header{"Cookie": {ck.Name + "=" + ck.Value},
			"X-Csrf-Token": {csrf}, "X-Original-Method": {"POST"}, "Origin": {origin}}, "")
	}
	checkProblem(t, validate("https://evil.example"), http.StatusForbidden)
	if r := validate(srv.URL); r.Status != http.StatusOK || r.Header.Get("X-Authenticated-User") != "dev-alice" {
		t.Fatalf("forward-auth of a same-origin POST: %s %v", r, r.Header)
	}

	// Each refusal is in the audit trail, with its reason. (A refusal
	// before authentication has no tenant: the dev platform admin reads it.)
	admin, err := devToken(ctx, srv.URL, "platform", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	audit := rawDo(t, "GET", srv.URL+"/api/v1/admin/audit?limit=200", http.Header{"Authorization": {"Bearer " + admin}}, "")
	mustStatus(t, audit, http.StatusOK)
	var page struct {
		Items []auditEvent `json:"items"`
	}
	audit.JSON(t, &page)
	for _, id := range refusedIDs {
		evs := findAudit(page.Items, id)
		if len(evs) != 1 || evs[0].Outcome != "denied" || evs[0].Detail != "cross-site request with an ambient credential" {
			t.Fatalf("audit of %s: %+v", id, evs)
		}
	}
}

// TestCrossSiteProxyHeaderWrites: a trusted proxy's identity headers are
// an ambient credential too (the proxy signed the browser in by its
// cookie): the same Origin / Sec-Fetch-Site rule refuses writes.
func TestCrossSiteProxyHeaderWrites(t *testing.T) {
	const cors = "https://spa.idflow.test"
	s := startProdIdflow(t, map[string]string{"IDFLOW_TRUSTED_PROXIES": "127.0.0.1/32", "IDFLOW_CORS_ORIGINS": cors})
	post := func(extra ...header) reply {
		hs := append([]header{{"X-Authenticated-User", "proxy-alice"}}, extra...)
		return s.Do(t, "POST", "/api/v1/facts", "", map[string]string{"content": "via the proxy"}, hs...)
	}
	for _, h := range [][]header{
		{{"Origin", "https://evil.example"}},
		{{"Origin", "null"}},
		{{"Sec-Fetch-Site", "cross-site"}},
	} {
		p := checkProblem(t, post(h...), http.StatusForbidden)
		if !strings.Contains(p.Detail, "must come from this site") {
			t.Fatalf("%v: %+v", h, p)
		}
	}
	for _, h := range [][]header{nil, {{"Origin", s.URL}}, {{"Origin", cors}}, {{"Sec-Fetch-Site", "same-site"}}} {
		mustStatus(t, post(h...), http.StatusCreated)
	}
	// Reads stay open to a link from anywhere.
	mustStatus(t, s.Do(t, "GET", "/api/v1/me", "", nil, header{"X-Authenticated-User", "proxy-alice"},
		header{"Origin", "https://evil.example"}), http.StatusOK)
}

// TestForwardAuthCrossSiteThroughNginx runs deploy/nginx/idflow-forward-auth.conf
// in a real nginx: its auth subrequest carries the client's Origin and
// Sec-Fetch-Site, so a cookie-authenticated POST from another site is
// refused (403) before the application sees it; from our own origin it
// passes.
func TestForwardAuthCrossSiteThroughNginx(t *testing.T) {
	bin := testsvc.NginxPath(t)
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	ck, csrf := sessionWithCSRF(t, srv.URL, "alice")
	app, hits := deployEcho(t)
	fa := startDeployNginx(t, bin, "idflow-forward-auth.conf", testsvc.FreePort(t), map[string]string{
		"IDFLOW_AUTH_UPSTREAM": strings.TrimPrefix(srv.URL, "http://"),
		"IDFLOW_APP_UPSTREAM":  strings.TrimPrefix(app.URL, "http://"),
	})
	post := func(extra http.Header) reply {
		h := http.Header{"Cookie": {ck.Name + "=" + ck.Value}, "X-Csrf-Token": {csrf}, "Content-Type": {"application/json"}}
		for k, v := range extra {
			h[k] = v
		}
		return rawDo(t, "POST", fa.URL+"/reports", h, `{"n":1}`)
	}
	before := hits.Load()
	for _, extra := range []http.Header{{"Origin": {"https://evil.example"}}, {"Sec-Fetch-Site": {"cross-site"}}} {
		if r := post(extra); r.Status != http.StatusForbidden {
			t.Fatalf("%v through nginx: %s; want 403", extra, r)
		}
	}
	if n := hits.Load() - before; n != 0 {
		t.Fatalf("the application received %d cross-site writes", n)
	}
	r := post(http.Header{"Origin": {srv.URL}})
	mustStatus(t, r, http.StatusOK)
	var e deployEchoed
	r.JSON(t, &e)
	if e.Method != "POST" || e.Header.Get("X-Authenticated-User") != "dev-alice" {
		t.Fatalf("same-origin POST arrived as %+v", e)
	}
}

// ---- 415: JSON routes read JSON ----

// TestJSONRoutesRefuseOtherMediaTypes: a body that is not declared JSON —
// text/plain and forms are what another site's page can send without a
// preflight — is refused with 415 problem+json and writes nothing; ingest
// also takes multipart/form-data, as documented; a POST that needs no
// body needs no Content-Type; /mcp answers 415 as problem+json too.
func TestJSONRoutesRefuseOtherMediaTypes(t *testing.T) {
	s := startProdIdflow(t, nil)
	tok := s.Token(t, callerAlice)
	send := func(method, path, ct, body string) reply {
		h := http.Header{"Authorization": {"Bearer " + tok}}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		return rawDo(t, method, s.URL+path, h, body)
	}
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "", "application/json; charset=iso-8859-1", "text/json"} {
		r := send("POST", "/api/v1/facts", ct, `{"content":"typed `+ct+`"}`)
		p := checkProblem(t, r, http.StatusUnsupportedMediaType)
		if p.Type != "urn:idflow:problem:unsupported_media_type" || !strings.Contains(p.Detail, "application/json") {
			t.Fatalf("%q: %+v", ct, p)
		}
	}
	for _, raw := range s.listAll(t, callerAlice, "/api/v1/facts") {
		if bytes.Contains(raw, []byte("typed")) {
			t.Fatalf("a non-JSON body was stored: %s", raw)
		}
	}
	mustStatus(t, send("POST", "/api/v1/facts", "application/json; charset=utf-8", `{"content":"json"}`), http.StatusCreated)
	appID := s.create(t, callerAlice, "/api/v1/apps", map[string]string{"name": "a"})
	mustStatus(t, send("PATCH", "/api/v1/apps/"+appID, "application/merge-patch+json", `{"name":"b"}`), http.StatusOK)
	checkProblem(t, send("PATCH", "/api/v1/apps/"+appID, "text/plain", `{"name":"c"}`), http.StatusUnsupportedMediaType)

	// Ingest: JSON or multipart, nothing else.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, err := mw.CreateFormFile("file", "notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("a multipart upload"))
	mw.Close()
	mustStatus(t, send("POST", "/api/v1/etl/ingest", mw.FormDataContentType(), form.String()), http.StatusCreated)
	mustStatus(t, send("POST", "/api/v1/etl/ingest", "application/json", `{"filename":"a.txt","content":"json upload"}`), http.StatusCreated)
	p := checkProblem(t, send("POST", "/api/v1/etl/ingest", "text/plain", "plain upload"), http.StatusUnsupportedMediaType)
	if !strings.Contains(p.Detail, "multipart/form-data") {
		t.Fatalf("ingest 415 detail %q", p.Detail)
	}

	// A POST that needs no body: no Content-Type needed.
	wfID := s.create(t, callerAlice, "/api/v1/workflows", map[string]any{"name": "w",
		"definition": map[string]any{"steps": []map[string]any{{"id": "s1", "type": "wait", "ms": 1}}}})
	mustStatus(t, send("POST", "/api/v1/workflows/"+wfID+"/publish", "", ""), http.StatusOK)
	// A JSON route without a body still says a body is required (400).
	checkProblem(t, send("POST", "/api/v1/facts", "", ""), http.StatusBadRequest)

	// /mcp: the SDK's own 415 is plain text; idflow answers problem+json.
	r := rawDo(t, "POST", s.URL+"/mcp", http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"text/plain"},
		"Accept": {"application/json, text/event-stream"}}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	checkProblem(t, r, http.StatusUnsupportedMediaType)
}

// ---- item 10: role and group names with commas through /auth/validate ----

// TestValidateListsRoundTrip: names with commas, quotes and backslashes
// leave /auth/validate quoted, and come back whole when a trusted proxy
// hands them to idflow (or to any reader that decodes RFC 9110 lists);
// simple names stay a plain comma list.
func TestValidateListsRoundTrip(t *testing.T) {
	s := startProdIdflow(t, map[string]string{"IDFLOW_TRUSTED_PROXIES": "127.0.0.1/32"})
	roles := []string{"reader", "Sales, EMEA", `say "hi"`, `CONTOSO\Ops`, "Développeurs"}
	groups := []string{"g,1", "g2", " padded "}
	tok := s.Issuer.Sign(s.userClaims(t, callerAlice).With("roles", roles).With("groups", groups))
	v := s.Do(t, "GET", "/auth/validate", tok, nil)
	mustStatus(t, v, http.StatusOK)
	if got := v.Header.Get("X-Authenticated-Roles"); got != `reader,"Sales, EMEA","say \"hi\"","CONTOSO\\Ops",Développeurs` {
		t.Fatalf("X-Authenticated-Roles: %q", got)
	}
	for name, want := range map[string][]string{"X-Authenticated-Roles": roles, "X-Authenticated-Groups": groups} {
		got, err := auth.ParseList(v.Header.Get(name))
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s %q decodes to %q (%v); want %q", name, v.Header.Get(name), got, err, want)
		}
	}
	// The answer's headers, handed to idflow by a trusted proxy.
	var me struct {
		UserID string   `json:"user_id"`
		Roles  []string `json:"roles"`
		Groups []string `json:"groups"`
	}
	var hs []header
	for _, n := range []string{"X-Authenticated-User", "X-Authenticated-Tenant", "X-Authenticated-Roles", "X-Authenticated-Groups"} {
		hs = append(hs, header{n, v.Header.Get(n)})
	}
	r := s.Do(t, "GET", "/api/v1/me", "", nil, hs...)
	mustStatus(t, r, http.StatusOK)
	r.JSON(t, &me)
	if me.UserID != s.UserID(t, callerAlice) || !slices.Equal(me.Roles, roles) || !slices.Equal(me.Groups, groups) {
		t.Fatalf("through the proxy headers: %+v; want roles %q groups %q", me, roles, groups)
	}
	// Simple names: the plain list they always were.
	a := s.As(t, callerAdmin, "GET", "/auth/validate", nil)
	if got := a.Header.Get("X-Authenticated-Roles"); got != "admin" {
		t.Fatalf("admin's roles header %q", got)
	}
	// A malformed list from the proxy is refused, not half-read.
	r = s.Do(t, "GET", "/api/v1/me", "", nil, header{"X-Authenticated-User", "proxy-alice"}, header{"X-Authenticated-Roles", `reader, "admin`})
	if p := checkProblem(t, r, http.StatusUnauthorized); !strings.Contains(p.Detail, "X-Authenticated-Roles") {
		t.Fatalf("%+v", p)
	}
}

// ---- item 12a: repeated identity headers ----

// TestRepeatedIdentityHeaderHTTP: a proxy that appends instead of replacing
// (or a client sending two Authorization headers) is told exactly that.
func TestRepeatedIdentityHeaderHTTP(t *testing.T) {
	s := startProdIdflow(t, map[string]string{"IDFLOW_TRUSTED_PROXIES": "127.0.0.1/32"})
	bearer := "Bearer " + s.Token(t, callerAlice)
	for name, tc := range map[string]struct {
		hdr  http.Header
		name string
	}{
		"user header":   {http.Header{"X-Authenticated-User": {"alice", "admin"}}, "X-Authenticated-User"},
		"roles header":  {http.Header{"X-Authenticated-User": {"alice"}, "X-Authenticated-Roles": {"reader", "admin"}}, "X-Authenticated-Roles"},
		"Authorization": {http.Header{"Authorization": {bearer, bearer}}, "Authorization"},
	} {
		r := rawDo(t, "GET", s.URL+"/api/v1/me", tc.hdr, "")
		p := checkProblem(t, r, http.StatusUnauthorized)
		if !strings.Contains(p.Detail, tc.name) || !strings.Contains(p.Detail, "more than once") || strings.Contains(p.Detail, "invalid token") {
			t.Fatalf("%s: detail %q", name, p.Detail)
		}
	}
}

// ---- item 12d: user ids that would look like another user ----

// TestMalformedUserIDsRefusedHTTP: a user id with white space at either
// end or an invisible character is refused at authentication (401), from a
// bearer token and from a trusted proxy's header, and never becomes a user.
// (Spaces and tabs around a header value are HTTP's optional white space:
// they never reach idflow; other spaces do, and are refused.)
func TestMalformedUserIDsRefusedHTTP(t *testing.T) {
	s := startProdIdflow(t, map[string]string{"IDFLOW_TRUSTED_PROXIES": "127.0.0.1/32"})
	bad := []string{"bob\u200b", "\u202ebob", "bob\u00a0", "\u00a0bob", "b\u00adob", "\ufeffbob", "bo\u2060b", "jose\u0301", "bob\u3000"}
	for _, id := range bad {
		tok := s.Issuer.Sign(s.userClaims(t, callerBob).With("oid", id))
		for _, r := range []reply{
			s.Do(t, "POST", "/api/v1/facts", tok, map[string]string{"content": "x"}),
			s.Do(t, "POST", "/api/v1/facts", "", map[string]string{"content": "x"}, header{"X-Authenticated-User", id}),
		} {
			if p := checkProblem(t, r, http.StatusUnauthorized); !strings.Contains(p.Detail, "malformed user id") {
				t.Fatalf("%q: %s", id, r)
			}
		}
	}
	// Bob himself is fine, and none of the look-alikes became a user.
	s.create(t, callerBob, "/api/v1/facts", map[string]string{"content": "bob's own"})
	r := s.As(t, callerAdmin, "GET", "/api/v1/admin/users?limit=200", nil)
	mustStatus(t, r, http.StatusOK)
	var users struct {
		Items []struct {
			UserID string `json:"user_id"`
		} `json:"items"`
	}
	r.JSON(t, &users)
	for _, u := range users.Items {
		for _, id := range bad {
			if u.UserID == id {
				t.Fatalf("a look-alike user %q was stored", id)
			}
		}
	}
	if len(users.Items) == 0 {
		t.Fatalf("no users listed at all: %s", r.Body)
	}
}
