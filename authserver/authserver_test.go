package authserver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/ratelimit"
)

const resource = "https://idflow.test/mcp"

func oauthCode(t *testing.T, err error) string {
	t.Helper()
	e, ok := asOAuth(err)
	if !ok {
		t.Fatalf("%v: not an OAuth error", err)
	}
	return e.Code
}

func validQuery() url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {"c1"}, "redirect_uri": {"http://127.0.0.1:5000/cb"},
		"state": {"st"}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"},
		"resource": {resource}, "scope": {"idflow"}}
}

// TestParseAuthorize: every refusal of an authorization request, and which
// of them the client may learn through its redirect URI.
func TestParseAuthorize(t *testing.T) {
	req, err := parseAuthorize(validQuery(), resource, []string{"idflow"})
	if err != nil || req.Resource != resource || len(req.Scopes) != 1 || req.State != "st" {
		t.Fatalf("valid request: %+v, %v", req, err)
	}
	for _, tc := range []struct {
		name     string
		mod      func(url.Values)
		code     string
		redirect bool
	}{
		{"no client", func(q url.Values) { q.Del("client_id") }, "invalid_request", false},
		{"no redirect", func(q url.Values) { q.Del("redirect_uri") }, "invalid_request", false},
		{"two redirects", func(q url.Values) { q.Add("redirect_uri", "http://127.0.0.1/x") }, "invalid_request", false},
		{"two clients", func(q url.Values) { q.Add("client_id", "c2") }, "invalid_request", false},
		{"token flow", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", true},
		{"PKCE plain", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request", true},
		{"PKCE method missing (means plain)", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request", true},
		{"PKCE missing", func(q url.Values) { q.Del("code_challenge") }, "invalid_request", true},
		{"challenge too short", func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request", true},
		{"challenge not base64url", func(q url.Values) { q.Set("code_challenge", strings.Repeat("+", 43)) }, "invalid_request", true},
		{"another resource", func(q url.Values) { q.Set("resource", "https://other.test/mcp") }, "invalid_target", true},
		{"the API as resource", func(q url.Values) { q.Set("resource", "https://idflow.test/") }, "invalid_target", true},
		{"unknown scope", func(q url.Values) { q.Set("scope", "idflow admin") }, "invalid_scope", true},
		{"long state", func(q url.Values) { q.Set("state", strings.Repeat("s", maxStateLen+1)) }, "invalid_request", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := validQuery()
			tc.mod(q)
			_, err := parseAuthorize(q, resource, []string{"idflow"})
			if err == nil {
				t.Fatal("accepted")
			}
			var re *redirectError
			if errors.As(err, &re) != tc.redirect {
				t.Fatalf("redirectable = %v; want %v", !tc.redirect, tc.redirect)
			}
			if got := oauthCode(t, err); got != tc.code {
				t.Fatalf("error %s; want %s", got, tc.code)
			}
		})
	}
	// No resource means /mcp; OIDC scopes are dropped; no scope asks for all.
	q := validQuery()
	q.Del("resource")
	q.Set("scope", "openid offline_access")
	req, err = parseAuthorize(q, resource, []string{"idflow", "x"})
	if err != nil || req.Resource != resource || len(req.Scopes) != 0 {
		t.Fatalf("%+v, %v", req, err)
	}
	q.Del("scope")
	if req, _ = parseAuthorize(q, resource, []string{"idflow", "x"}); len(req.Scopes) != 2 {
		t.Fatalf("no scope: %v; want every supported one", req.Scopes)
	}
}

// TestRedirectURIs: what may be registered, and how a request's redirect
// URI must match (exactly; a loopback one but for the port).
func TestRedirectURIs(t *testing.T) {
	for uri, ok := range map[string]bool{
		"http://127.0.0.1:8123/callback":                         true,
		"http://[::1]/cb":                                        true,
		"http://localhost:6274/oauth/callback":                   true,
		"https://app.example/cb":                                 true,
		"cursor://anysphere.cursor-mcp/oauth":                    true,
		"vscode://vscode.github-authentication/did-authenticate": true,
		"http://evil.example/cb":                                 false, // http off loopback
		"http://127.0.0.1.evil.example/cb":                       false,
		"http://10.0.0.1/cb":                                     false,
		"javascript:alert(1)":                                    false,
		"data:text/html,x":                                       false,
		"file:///etc/passwd":                                     false,
		"https://app.example/cb#frag":                            false,
		"https://user:pw@app.example/cb":                         false,
		"/relative":                                              false,
		"":                                                       false,
		"https://app.example/c b":                                false,
		"https://app.example/" + strings.Repeat("a", 2000):       false,
	} {
		if got := validRedirectURI(uri) == ""; got != ok {
			t.Errorf("validRedirectURI(%q) ok = %v; want %v", uri, got, ok)
		}
	}
	reg := []string{"http://127.0.0.1:8123/callback", "https://app.example/cb", "http://localhost/cb?x=1"}
	for uri, ok := range map[string]bool{
		"http://127.0.0.1:8123/callback":  true,
		"http://127.0.0.1:9999/callback":  true, // RFC 8252: any port on loopback
		"http://127.0.0.1/callback":       true,
		"http://localhost:1/cb?x=1":       true,
		"http://127.0.0.1:9999/callback2": false,
		"http://127.0.0.1:9999/Callback":  false,
		"http://[::1]:8123/callback":      false, // another host
		"http://localhost:8123/callback":  false,
		"https://app.example/cb":          true,
		"https://app.example/cb/":         false,
		"https://app.example:444/cb":      false, // ports vary on loopback only
		"https://APP.example/cb":          false,
		"https://app.example/cb?x=1":      false,
		"http://127.0.0.1:99999/callback": false,
		"http://localhost:1/cb?x=2":       false,
	} {
		if got := redirectMatches(reg, uri); got != ok {
			t.Errorf("redirectMatches(%q) = %v; want %v", uri, got, ok)
		}
	}
}

// TestRegistration: the refusals of dynamic registration.
func TestRegistration(t *testing.T) {
	ok := `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"Claude Code"}`
	if _, err := parseRegistration([]byte(ok), []string{"idflow"}); err != nil {
		t.Fatal(err)
	}
	many := `{"redirect_uris":[` + strings.TrimSuffix(strings.Repeat(`"http://127.0.0.1/cb",`, maxRedirectURIs+1), ",") + `]}`
	for body, code := range map[string]string{
		`[]`:                   "invalid_client_metadata",
		`{"redirect_uris":[]}`: "invalid_redirect_uri",
		many:                   "invalid_redirect_uri",
		`{"redirect_uris":["http://evil.example/cb"]}`:                                               "invalid_redirect_uri",
		`{"redirect_uris":["javascript:alert(1)"]}`:                                                  "invalid_redirect_uri",
		`{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"a\u202eb"}`:                         "invalid_client_metadata",
		`{"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["client_credentials"]}`:             "invalid_client_metadata",
		`{"redirect_uris":["http://127.0.0.1/cb"],"response_types":["token"]}`:                       "invalid_client_metadata",
		`{"redirect_uris":["http://127.0.0.1/cb"],"scope":"admin"}`:                                  "invalid_client_metadata",
		`{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`: "invalid_client_metadata",
	} {
		_, err := parseRegistration([]byte(body), []string{"idflow"})
		if err == nil {
			t.Errorf("%s: accepted", body)
			continue
		}
		if got := oauthCode(t, err); got != code {
			t.Errorf("%s: %s; want %s", body, got, code)
		}
	}
}

// TestRegistrationRateLimit: a peer gets n registrations at once, then
// one more per minute/n (a token bucket on the injected clock), answered
// 429 with the seconds to wait; another peer has its own bucket. (The
// metadata here is malformed: a registration that passed the limit is
// refused as invalid, one that did not as rate-limited.)
func TestRegistrationRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	s := &Server{registrations: ratelimit.NewMemory(func() time.Time { return now }),
		registrationLimit: ratelimit.Limit{Count: 3, Per: time.Minute, Burst: 3}}
	register := func(peer string) (retryAfter string, err error) {
		r := httptest.NewRequest(http.MethodPost, RegisterPath, strings.NewReader("{"))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = peer + ":4000"
		w := httptest.NewRecorder()
		err = s.Register(w, r)
		return w.Header().Get("Retry-After"), err
	}
	limited := func(err error) bool { return idflow.ErrorCode(err) == idflow.ERATELIMIT }
	for i := range 3 {
		if _, err := register("10.0.0.1"); err == nil || limited(err) {
			t.Fatalf("registration %d: %v; want it past the limit (and refused as malformed)", i+1, err)
		}
	}
	if retry, err := register("10.0.0.1"); !limited(err) || retry != "20" {
		t.Fatalf("a fourth registration at once: %v, Retry-After %q; want rate-limited, 20 s", err, retry)
	}
	if _, err := register("10.0.0.2"); limited(err) {
		t.Fatal("another peer was refused")
	}
	now = now.Add(20 * time.Second)
	if _, err := register("10.0.0.1"); limited(err) {
		t.Fatal("refused once a token was back")
	}
	if _, err := register("10.0.0.1"); !limited(err) {
		t.Fatal("two registrations on one token")
	}
}

// TestPublicAddr: the fetcher's address check.
func TestPublicAddr(t *testing.T) {
	for a, ok := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true,
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "0.0.0.0": false, "::1": false, "fe80::1": false, "fc00::1": false, "::ffff:127.0.0.1": false,
		"::ffff:10.0.0.1": false, "64:ff9b::a00:1": false, "2002:a00:1::": false, "224.0.0.1": false, "255.255.255.255": false,
	} {
		if got := publicAddr(netip.MustParseAddr(a)); got != ok {
			t.Errorf("publicAddr(%s) = %v; want %v", a, got, ok)
		}
	}
}

// docServer serves a client metadata document over TLS on 127.0.0.1.
func docServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, id string)) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, r, srv.URL+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

func goodDoc(w http.ResponseWriter, id string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"client_id": id, "client_name": "Doc Client",
		"redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "none"})
}

// TestClientMetadataDocuments: fetched over https from public addresses
// only (private ones with the insecure option), bounded in size and time,
// never through a redirect, checked, and cached.
func TestClientMetadataDocuments(t *testing.T) {
	var hits atomic.Int64
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv, pool := docServer(t, func(w http.ResponseWriter, r *http.Request, id string) {
		hits.Add(1)
		switch r.URL.Path {
		case "/good":
			goodDoc(w, id)
		case "/big":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"client_id":"` + id + `","pad":"` + strings.Repeat("x", 70<<10) + `"}`))
		case "/slow":
			select { // holds the answer until the test ends: only the fetch timeout ends it
			case <-release:
			case <-r.Context().Done():
			}
		case "/redirect":
			http.Redirect(w, r, "/good", http.StatusFound)
		case "/other-id":
			goodDoc(w, "https://elsewhere.example/client")
		case "/secret":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"client_id":"` + id + `","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}`))
		case "/evil-redirect":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"client_id":"` + id + `","redirect_uris":["http://evil.example/cb"]}`))
		case "/html":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(`<html></html>`))
		default:
			http.NotFound(w, r)
		}
	})
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	docs, err := newDocuments(FetchConfig{InsecureAllowPrivateAddresses: true, RootCAs: pool, Timeout: 500 * time.Millisecond}, clock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := docs.get(ctx, srv.URL+"/good")
	if err != nil || c.Name != "Doc Client" || !c.Document || len(c.RedirectURIs) != 1 {
		t.Fatalf("good document: %+v, %v", c, err)
	}
	before := hits.Load()
	if _, err := docs.get(ctx, srv.URL+"/good"); err != nil || hits.Load() != before {
		t.Fatalf("a cached document was fetched again (%v)", err)
	}
	now = now.Add(defaultDocTTL + time.Second)
	if _, err := docs.get(ctx, srv.URL+"/good"); err != nil || hits.Load() != before+1 {
		t.Fatalf("an expired document was not fetched again (%v)", err)
	}
	for path, want := range map[string]string{
		"/big": "larger than", "/slow": "took too long", "/redirect": "redirects", "/other-id": "names another client_id",
		"/secret": "confidential", "/evil-redirect": "redirect URI", "/html": "not application/json", "/missing": "HTTP 404",
	} {
		_, err := docs.get(ctx, srv.URL+path)
		if err == nil || oauthCode(t, err) != "invalid_client" || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want invalid_client saying %q", path, err, want)
		}
	}
	// A URL that cannot be a document is refused before any fetch.
	before = hits.Load()
	for _, id := range []string{"http://127.0.0.1/x", srv.URL, srv.URL + "/", srv.URL + "/a/../good", srv.URL + "/good#f",
		strings.Replace(srv.URL, "https://", "https://u:p@", 1) + "/good"} {
		if _, err := docs.get(ctx, id); err == nil {
			t.Errorf("%s: accepted", id)
		}
	}
	if hits.Load() != before {
		t.Fatal("a refused client_id URL was fetched")
	}

	// Without the insecure option, the loopback address is refused when
	// dialing, whatever the name resolves to.
	strict, err := newDocuments(FetchConfig{RootCAs: pool, Timeout: 2 * time.Second}, clock)
	if err != nil {
		t.Fatal(err)
	}
	before = hits.Load()
	localhostURL := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/good"
	for _, id := range []string{srv.URL + "/good", localhostURL} {
		_, err := strict.get(ctx, id)
		if err == nil || !strings.Contains(err.Error(), "not public") {
			t.Errorf("%s on a private address: %v; want a refusal", id, err)
		}
	}
	if hits.Load() != before {
		t.Fatal("a document on a private address was fetched")
	}
}

// TestAccessTokenAudience is in cmd/idflow (the whole server); here: the
// OAuth error members of a refusal.
func TestOAuthErrStatus(t *testing.T) {
	for code, want := range map[string]string{"invalid_client": idflow.EUNAUTHORIZED, "invalid_grant": idflow.EINVALID,
		"invalid_request": idflow.EINVALID} {
		if got := idflow.ErrorCode(oauthErr(code, "x")); got != want {
			t.Errorf("%s: %s; want %s", code, got, want)
		}
	}
}

func FuzzParseAuthorize(f *testing.F) {
	f.Add(validQuery().Encode())
	f.Add("client_id=a&redirect_uri=b&code_challenge_method=plain")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := parseAuthorize(q, resource, []string{"idflow"})
		if err == nil && (req.Resource != resource || !validChallenge(req.CodeChallenge) || q.Get("code_challenge_method") != "S256") {
			t.Fatalf("accepted %q as %+v", raw, req)
		}
	})
}

func FuzzRedirectURI(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:1/cb", "https://a.example/cb", "javascript:x", "http://evil/cb", "cursor://x/y"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, reg, uri string) {
		if validRedirectURI(reg) != "" {
			return
		}
		if !redirectMatches([]string{reg}, uri) {
			return
		}
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("matched an unparsable %q", uri)
		}
		if uri != reg && (u.Scheme != "http" || !loopbackHost(u.Hostname())) {
			t.Fatalf("%q matched %q without being equal or loopback", uri, reg)
		}
	})
}

func FuzzParseDocument(f *testing.F) {
	id := "https://c.example/client"
	f.Add([]byte(`{"client_id":"` + id + `","redirect_uris":["http://127.0.0.1/cb"]}`))
	f.Add([]byte(`{"client_id":"` + id + `","redirect_uris":["javascript:x"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := parseDocument(id, body)
		if err != nil {
			return
		}
		for _, uri := range c.RedirectURIs {
			if validRedirectURI(uri) != "" {
				t.Fatalf("accepted redirect URI %q", uri)
			}
		}
	})
}

func FuzzParseRegistration(f *testing.F) {
	f.Add([]byte(`{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		reg, err := parseRegistration(body, []string{"idflow"})
		if err != nil {
			return
		}
		if len(reg.RedirectURIs) == 0 || len(reg.RedirectURIs) > maxRedirectURIs || !validClientName(reg.ClientName) {
			t.Fatalf("accepted %+v", reg)
		}
	})
}
