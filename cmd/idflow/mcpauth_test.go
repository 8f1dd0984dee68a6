package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// idflow as the authorization server of /mcp (IDFLOW_MCP_AUTH=idflow, the
// default in --dev), attacked over HTTP: every refusal docs/MCP_AUTH.md lists.
// The TypeScript SDK's own OAuth client, driven through Chromium, is in
// mcpauth_tsclient_test.go.

// oauthKit plays an MCP client (and the user's browser) against a server.
type oauthKit struct {
	base string
}

// oauthErrDoc is a refusal as OAuth clients read it.
type oauthErrDoc struct {
	Status           int    `json:"status"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func wantOAuthError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	var e oauthErrDoc
	if r.Status != status || json.Unmarshal(r.Body, &e) != nil || e.Error != code {
		t.Fatalf("%s; want %d with error %q", r, status, code)
	}
}

func (k oauthKit) register(t *testing.T, name string, redirects ...string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"client_name": name, "redirect_uris": redirects})
	r := rawDo(t, "POST", k.base+"/oauth/register", http.Header{"Content-Type": {"application/json"}}, string(b))
	mustStatus(t, r, http.StatusCreated)
	var out struct {
		ClientID   string `json:"client_id"`
		AuthMethod string `json:"token_endpoint_auth_method"`
	}
	r.JSON(t, &out)
	if out.ClientID == "" || out.AuthMethod != "none" {
		t.Fatalf("registration: %s", r)
	}
	return out.ClientID
}

// pkce is a code verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func (k oauthKit) authorizeQuery(clientID, redirect, challenge string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st-123"},
		"resource": {k.base + "/mcp"}, "scope": {"idflow"}}
}

// session is a signed-in browser.
type session struct {
	cookie *http.Cookie
	csrf   string
}

func (s session) header() http.Header {
	return http.Header{"Cookie": {s.cookie.Name + "=" + s.cookie.Value}}
}

// consent answers the consent page as the browser's script does.
func (k oauthKit) consent(t *testing.T, s session, q url.Values, decision string) reply {
	t.Helper()
	form := url.Values{}
	for n, v := range q {
		form[n] = v
	}
	form.Set("decision", decision)
	h := s.header()
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("X-CSRF-Token", s.csrf)
	h.Set("Origin", k.base)
	return rawDo(t, "POST", k.base+"/oauth/authorize", h, form.Encode())
}

// code goes through authorize and consent as s and returns the code.
func (k oauthKit) code(t *testing.T, s session, clientID, redirect, challenge string) string {
	t.Helper()
	q := k.authorizeQuery(clientID, redirect, challenge)
	page := rawDo(t, "GET", k.base+"/oauth/authorize?"+q.Encode(), s.header(), "")
	mustStatus(t, page, http.StatusOK)
	if !strings.Contains(string(page.Body), "127.0.0.1") || !strings.Contains(page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("the consent page does not name the redirect host, or may be framed: %s", page)
	}
	r := k.consent(t, s, q, "allow")
	mustStatus(t, r, http.StatusOK)
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	r.JSON(t, &out)
	u, err := url.Parse(out.RedirectTo)
	if err != nil || u.Query().Get("state") != "st-123" || u.Query().Get("iss") != k.base || u.Query().Get("code") == "" {
		t.Fatalf("consent answered %q; want the redirect URI with code, state and iss", out.RedirectTo)
	}
	if !strings.HasPrefix(out.RedirectTo, redirect+"?") {
		t.Fatalf("redirected to %q; want %q", out.RedirectTo, redirect)
	}
	return u.Query().Get("code")
}

func (k oauthKit) token(t *testing.T, form url.Values) reply {
	t.Helper()
	return rawDo(t, "POST", k.base+"/oauth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form.Encode())
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
}

func (k oauthKit) exchange(t *testing.T, clientID, redirect, code, verifier string) tokenPair {
	t.Helper()
	r := k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientID},
		"redirect_uri": {redirect}, "code_verifier": {verifier}, "resource": {k.base + "/mcp"}})
	mustStatus(t, r, http.StatusOK)
	var tp tokenPair
	r.JSON(t, &tp)
	if tp.AccessToken == "" || tp.RefreshToken == "" || tp.TokenType != "Bearer" || tp.ExpiresIn <= 0 || tp.ExpiresIn > 3600 {
		t.Fatalf("token response %s", r)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("a token response without Cache-Control: no-store")
	}
	return tp
}

func (k oauthKit) refresh(t *testing.T, clientID, rt string) reply {
	t.Helper()
	return k.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}})
}

// whoami calls the whoami tool with tok and answers the user id.
func whoami(t *testing.T, base, tok string) string {
	t.Helper()
	cs, _ := mcpConnect(t, base, tok)
	var who struct {
		UserID string `json:"user_id"`
	}
	mcpCall(t, cs, "whoami", nil).decode(t, &who)
	return who.UserID
}

// mcpStatus is the status of an MCP initialize with tok.
func mcpStatus(t *testing.T, base, tok string) int {
	t.Helper()
	resp, _ := mcpHTTP(t, "POST", base, tok, "", mcpInitialize)
	if resp.StatusCode == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Fatalf("a 401 from /mcp without the resource_metadata challenge: %q", resp.Header.Get("WWW-Authenticate"))
	}
	return resp.StatusCode
}

// TestMCPAuthorizationServer: in --dev, with no configuration, an MCP
// client discovers idflow as the authorization server, registers, sends
// alice through the browser login and the consent page, and calls whoami
// as alice; bob through the same client is bob. Codes and refresh tokens
// are bound to their client, redirect URI and verifier; a refresh token
// presented twice revokes the grant; revoking a grant ends the access.
func TestMCPAuthorizationServer(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	k := oauthKit{base: srv.URL}

	// Discovery: the resource names idflow; idflow's metadata says S256,
	// public clients, registration and metadata documents.
	r := rawDo(t, "GET", srv.URL+"/.well-known/oauth-protected-resource/mcp", nil, "")
	var prm struct {
		Resource string   `json:"resource"`
		AS       []string `json:"authorization_servers"`
	}
	r.JSON(t, &prm)
	if prm.Resource != srv.URL+"/mcp" || len(prm.AS) != 1 || prm.AS[0] != srv.URL {
		t.Fatalf("protected resource metadata %s", r)
	}
	r = rawDo(t, "GET", srv.URL+"/.well-known/oauth-authorization-server", nil, "")
	var asm map[string]any
	r.JSON(t, &asm)
	if asm["issuer"] != srv.URL || asm["registration_endpoint"] != srv.URL+"/oauth/register" ||
		asm["client_id_metadata_document_supported"] != true || r.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("authorization server metadata %s", r)
	}
	if m, _ := asm["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Fatalf("code_challenge_methods_supported %v; want only S256", asm["code_challenge_methods_supported"])
	}

	const redirect = "http://127.0.0.1:33418/callback"
	clientA := k.register(t, "Client A", redirect)
	clientB := k.register(t, "Client B", "http://127.0.0.1:44000/cb")
	ck, csrf := sessionWithCSRF(t, srv.URL, "alice")
	alice := session{ck, csrf}
	ck, csrf = sessionWithCSRF(t, srv.URL, "bob")
	bob := session{ck, csrf}

	v, ch := pkce()
	tpA := k.exchange(t, clientA, redirect, k.code(t, alice, clientA, redirect, ch), v)
	v, ch = pkce()
	tpB := k.exchange(t, clientA, redirect, k.code(t, bob, clientA, redirect, ch), v)
	aliceID, bobID := whoami(t, srv.URL, tpA.AccessToken), whoami(t, srv.URL, tpB.AccessToken)
	if aliceID == "" || bobID == "" || aliceID == bobID {
		t.Fatalf("whoami: alice %q, bob %q; want two identities", aliceID, bobID)
	}
	var me struct {
		UserID string `json:"user_id"`
	}
	rawDo(t, "GET", srv.URL+"/api/v1/me", alice.header(), "").JSON(t, &me)
	if me.UserID != aliceID {
		t.Fatalf("the MCP token names %q; alice's browser session %q", aliceID, me.UserID)
	}

	t.Run("OwnTokensAreForMCPOnly", func(t *testing.T) {
		r := rawDo(t, "GET", srv.URL+"/api/v1/me", http.Header{"Authorization": {"Bearer " + tpA.AccessToken}}, "")
		checkProblem(t, r, http.StatusUnauthorized)
		r = rawDo(t, "GET", srv.URL+"/api/v1/facts", http.Header{"Authorization": {"Bearer " + tpA.AccessToken}}, "")
		checkProblem(t, r, http.StatusUnauthorized)
	})

	t.Run("CodeRefusals", func(t *testing.T) {
		// Redeemed by another client: refused, and the code is spent.
		v, ch := pkce()
		code := k.code(t, alice, clientA, redirect, ch)
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientB},
			"redirect_uri": {redirect}, "code_verifier": {v}}), 400, "invalid_grant")
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"redirect_uri": {redirect}, "code_verifier": {v}}), 400, "invalid_grant")
		// A wrong verifier (a PKCE downgrade: the challenge itself as verifier).
		v, ch = pkce()
		code = k.code(t, alice, clientA, redirect, ch)
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"redirect_uri": {redirect}, "code_verifier": {ch}}), 400, "invalid_grant")
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"redirect_uri": {redirect}, "code_verifier": {v}}), 400, "invalid_grant")
		// No verifier at all.
		_, ch = pkce()
		code = k.code(t, alice, clientA, redirect, ch)
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"redirect_uri": {redirect}}), 400, "invalid_request")
		// Another redirect URI than the authorization request's.
		v, ch = pkce()
		code = k.code(t, alice, clientA, redirect, ch)
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"redirect_uri": {"http://127.0.0.1:1/callback"}, "code_verifier": {v}}), 400, "invalid_grant")
		// Reused.
		v, ch = pkce()
		code = k.code(t, alice, clientA, redirect, ch)
		k.exchange(t, clientA, redirect, code, v)
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"redirect_uri": {redirect}, "code_verifier": {v}}), 400, "invalid_grant")
		// A secret: clients are public.
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"client_secret": {"s"}, "redirect_uri": {redirect}, "code_verifier": {v}}), 401, "invalid_client")
		// Another resource.
		wantOAuthError(t, k.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientA},
			"redirect_uri": {redirect}, "code_verifier": {v}, "resource": {srv.URL + "/"}}), 400, "invalid_target")
	})

	t.Run("AuthorizeRefusals", func(t *testing.T) {
		_, ch := pkce()
		get := func(q url.Values) reply {
			return rawDo(t, "GET", srv.URL+"/oauth/authorize?"+q.Encode(), alice.header(), "")
		}
		// Not redirected anywhere: an unregistered redirect URI (not even a
		// near miss), an unknown client.
		for name, mod := range map[string]func(url.Values){
			"another path":        func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:33418/callback/evil") },
			"another host":        func(q url.Values) { q.Set("redirect_uri", "http://localhost:33418/callback") },
			"http off loopback":   func(q url.Values) { q.Set("redirect_uri", "http://evil.example/callback") },
			"a trailing slash":    func(q url.Values) { q.Set("redirect_uri", redirect+"/") },
			"unknown client":      func(q url.Values) { q.Set("client_id", "mcpc_nobody") },
			"another's redirect":  func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:44000/cb") },
			"private doc address": func(q url.Values) { q.Set("client_id", "https://127.0.0.1:1/client.json") },
		} {
			r := get(mutate(k.authorizeQuery(clientA, redirect, ch), mod))
			if r.Status != http.StatusBadRequest && r.Status != http.StatusUnauthorized || r.Header.Get("Location") != "" {
				t.Errorf("%s: %s; want 400/401 and no redirect", name, r)
			}
		}
		// Another loopback port is the same native app (RFC 8252).
		r := get(mutate(k.authorizeQuery(clientA, redirect, ch), func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:5/callback") }))
		mustStatus(t, r, http.StatusOK)
		// Redirected with an error: PKCE downgrades, another resource.
		for name, tc := range map[string]struct {
			mod  func(url.Values)
			code string
		}{
			"plain":          {func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
			"no method":      {func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
			"no challenge":   {func(q url.Values) { q.Del("code_challenge") }, "invalid_request"},
			"implicit":       {func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
			"other resource": {func(q url.Values) { q.Set("resource", "https://other.example/mcp") }, "invalid_target"},
			"unknown scope":  {func(q url.Values) { q.Set("scope", "idflow admin") }, "invalid_scope"},
		} {
			r := get(mutate(k.authorizeQuery(clientA, redirect, ch), tc.mod))
			loc, _ := url.Parse(r.Header.Get("Location"))
			if r.Status != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), redirect+"?") ||
				loc.Query().Get("error") != tc.code || loc.Query().Get("state") != "st-123" || loc.Query().Get("code") != "" {
				t.Errorf("%s: %s Location %q; want a redirect with error=%s", name, r, r.Header.Get("Location"), tc.code)
			}
		}
		q := k.authorizeQuery(clientA, redirect, ch)
		// The consent is a browser's: a bearer token cannot mint a grant,
		// and idflow's own MCP tokens are not even accepted here.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		apiTok, err := devToken(ctx, srv.URL, "alice", time.Hour, "")
		if err != nil {
			t.Fatal(err)
		}
		for tok, want := range map[string]int{apiTok: http.StatusForbidden, tpA.AccessToken: http.StatusUnauthorized} {
			h := http.Header{"Authorization": {"Bearer " + tok}}
			if r := rawDo(t, "GET", srv.URL+"/oauth/authorize?"+q.Encode(), h, ""); want == http.StatusForbidden {
				checkProblem(t, r, want)
			} else if r.Status != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), "/auth/login?") {
				t.Errorf("authorize with an MCP token: %s; want the browser sent to sign in", r) // a refused credential, as on every page
			}
			h.Set("Content-Type", "application/x-www-form-urlencoded")
			checkProblem(t, rawDo(t, "POST", srv.URL+"/oauth/authorize", h, mutate(q, func(q url.Values) { q.Set("decision", "allow") }).Encode()), want)
		}
		// The consent answer needs the session's CSRF token and our Origin.
		noCSRF := k.consent(t, session{alice.cookie, "wrong"}, q, "allow")
		checkProblem(t, noCSRF, http.StatusForbidden)
		h := alice.header()
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		h.Set("X-CSRF-Token", alice.csrf)
		h.Set("Origin", "https://evil.example")
		checkProblem(t, rawDo(t, "POST", srv.URL+"/oauth/authorize", h, mutate(q, func(q url.Values) { q.Set("decision", "allow") }).Encode()), http.StatusForbidden)
		// Deny: access_denied, no code.
		r = k.consent(t, alice, q, "deny")
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		r.JSON(t, &out)
		if u, _ := url.Parse(out.RedirectTo); u == nil || u.Query().Get("error") != "access_denied" || u.Query().Get("code") != "" {
			t.Errorf("deny answered %q", out.RedirectTo)
		}
		// Signed out: sent to sign in, and back here.
		r = rawDo(t, "GET", srv.URL+"/oauth/authorize?"+q.Encode(), nil, "")
		if r.Status != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), "/auth/login?return_to=%2Foauth%2Fauthorize%3F") {
			t.Errorf("signed out: %s Location %q", r, r.Header.Get("Location"))
		}
	})

	t.Run("RegisterRefusals", func(t *testing.T) {
		for body, code := range map[string]string{
			`{"redirect_uris":["http://evil.example/cb"]}`: "invalid_redirect_uri",
			`{"redirect_uris":["javascript:alert(1)"]}`:    "invalid_redirect_uri",
			`{"redirect_uris":[]}`:                         "invalid_redirect_uri",
		} {
			wantOAuthError(t, rawDo(t, "POST", srv.URL+"/oauth/register", http.Header{"Content-Type": {"application/json"}}, body), 400, code)
		}
		big := `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"` + strings.Repeat("x", 2<<20) + `"}`
		r := rawDo(t, "POST", srv.URL+"/oauth/register", http.Header{"Content-Type": {"application/json"}}, big)
		checkProblem(t, r, http.StatusRequestEntityTooLarge)
	})

	t.Run("RefreshReuseRevokesTheGrant", func(t *testing.T) {
		v, ch := pkce()
		tp := k.exchange(t, clientB, "http://127.0.0.1:44000/cb", k.code(t, alice, clientB, "http://127.0.0.1:44000/cb", ch), v)
		// Another client cannot use it.
		wantOAuthError(t, k.refresh(t, clientA, tp.RefreshToken), 400, "invalid_grant")
		r := k.refresh(t, clientB, tp.RefreshToken)
		mustStatus(t, r, http.StatusOK)
		var next tokenPair
		r.JSON(t, &next)
		if next.RefreshToken == tp.RefreshToken || next.AccessToken == "" {
			t.Fatalf("refresh did not rotate: %s", r)
		}
		if got := whoami(t, srv.URL, next.AccessToken); got != aliceID {
			t.Fatalf("refreshed token names %q; want alice %q", got, aliceID)
		}
		// The old one again: the grant is revoked, the new tokens die too.
		wantOAuthError(t, k.refresh(t, clientB, tp.RefreshToken), 400, "invalid_grant")
		wantOAuthError(t, k.refresh(t, clientB, next.RefreshToken), 400, "invalid_grant")
		if st := mcpStatus(t, srv.URL, tpA.AccessToken); st != http.StatusOK {
			t.Fatalf("a live grant's access token: %d; want 200", st)
		}
		if st := mcpStatus(t, srv.URL, next.AccessToken); st != http.StatusUnauthorized {
			t.Fatalf("an access token of a revoked grant: %d; want 401", st)
		}
		// Client A's grant of alice is untouched.
		if got := whoami(t, srv.URL, tpA.AccessToken); got != aliceID {
			t.Fatalf("client A after client B's revocation: %q", got)
		}
	})

	t.Run("RevokeGrant", func(t *testing.T) {
		var grants struct {
			Items []struct {
				ID       string `json:"id"`
				ClientID string `json:"client_id"`
				UserID   string `json:"user_id"`
			} `json:"items"`
		}
		rawDo(t, "GET", srv.URL+"/api/v1/oauth/grants", alice.header(), "").JSON(t, &grants)
		var gid string
		for _, g := range grants.Items {
			if g.UserID != aliceID {
				t.Fatalf("alice lists a grant of %q", g.UserID)
			}
			if g.ClientID == clientA {
				gid = g.ID
			}
		}
		if gid == "" {
			t.Fatalf("alice's grant to client A is not listed: %+v", grants)
		}
		del := func(s session, id string) reply {
			h := s.header()
			h.Set("X-CSRF-Token", s.csrf)
			return rawDo(t, "DELETE", srv.URL+"/api/v1/oauth/grants/"+id, h, "")
		}
		// Bob cannot revoke it: 404, and alice's access stands.
		checkProblem(t, del(bob, gid), http.StatusNotFound)
		if got := whoami(t, srv.URL, tpA.AccessToken); got != aliceID {
			t.Fatalf("after bob's attempt: %q", got)
		}
		mustStatus(t, del(alice, gid), http.StatusNoContent)
		if st := mcpStatus(t, srv.URL, tpA.AccessToken); st != http.StatusUnauthorized {
			t.Fatalf("an access token of a revoked grant: %d; want 401", st)
		}
		wantOAuthError(t, k.refresh(t, clientA, tpA.RefreshToken), 400, "invalid_grant")
		// Bob's grant to the same client stands.
		if got := whoami(t, srv.URL, tpB.AccessToken); got != bobID {
			t.Fatalf("bob after alice revoked hers: %q", got)
		}
	})
}

func mutate(q url.Values, mod func(url.Values)) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = append([]string{}, v...)
	}
	mod(c)
	return c
}

// cimdServer serves a Client ID Metadata Document over TLS on 127.0.0.1,
// and writes its certificate to a PEM file for IDFLOW_MCP_CIMD_CA_FILE.
func cimdServer(t *testing.T, redirects ...string) (clientID, caFile string) {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/client.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"client_id": srv.URL + "/client.json", "client_name": "Metadata Client",
			"redirect_uris": redirects, "token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"}})
	}))
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL + "/client.json", caFile
}

// TestMCPAuthorizationMetadataDocument: a client named by the URL of its
// metadata document signs alice in; the consent page names the document's
// host. Without IDFLOW_INSECURE_MCP_CIMD_PRIVATE, outside --dev, the same
// document on a loopback address is refused.
func TestMCPAuthorizationMetadataDocument(t *testing.T) {
	t.Parallel()
	const redirect = "http://127.0.0.1:7777/cb"
	clientID, caFile := cimdServer(t, redirect)
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error", "IDFLOW_MCP_CIMD_CA_FILE": caFile}, "--dev")
	k := oauthKit{base: srv.URL}
	ck, csrf := sessionWithCSRF(t, srv.URL, "alice")
	alice := session{ck, csrf}
	v, ch := pkce()
	q := k.authorizeQuery(clientID, redirect, ch)
	page := rawDo(t, "GET", srv.URL+"/oauth/authorize?"+q.Encode(), alice.header(), "")
	mustStatus(t, page, http.StatusOK)
	host := strings.TrimPrefix(strings.TrimSuffix(clientID, "/client.json"), "https://")
	if !strings.Contains(string(page.Body), "Metadata Client") || !strings.Contains(string(page.Body), "the web site "+host) {
		t.Fatalf("the consent page does not name the client and its document's host: %s", page.Body)
	}
	tp := k.exchange(t, clientID, redirect, k.code(t, alice, clientID, redirect, ch), v)
	var me struct {
		UserID string `json:"user_id"`
	}
	rawDo(t, "GET", srv.URL+"/api/v1/me", alice.header(), "").JSON(t, &me)
	if got := whoami(t, srv.URL, tp.AccessToken); got != me.UserID {
		t.Fatalf("whoami %q; want alice %q", got, me.UserID)
	}
	// A redirect URI the document does not list is refused.
	r := rawDo(t, "GET", srv.URL+"/oauth/authorize?"+mutate(q, func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:7777/other") }).Encode(), alice.header(), "")
	if r.Status != http.StatusBadRequest || r.Header.Get("Location") != "" {
		t.Fatalf("an unlisted redirect URI: %s", r)
	}
}
