package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

const (
	ownOrigin  = "https://idflow.test"
	corsOrigin = "https://spa.idflow.test"
)

// crossSiteFixture: the public URL https://idflow.test/base (a path: only
// the origin counts) and one CORS origin; a session and a trusted proxy.
func crossSiteFixture(t *testing.T) *authFixture {
	t.Helper()
	f := newAuthFixture(t, fakeSessions{id: "sess-1", csrf: "csrf-1", p: authtest.User("alice", "t-one")})
	f.a = New(Config{Bearer: f.a.bearer, Sessions: f.a.sessions, Proxy: &ProxyConfig{
		Trusted: f.a.proxy.trusted, AssertionHeader: assertionHdr, Assertions: f.a.proxy.verifier,
	}, Origins: []string{ownOrigin + "/base", " " + corsOrigin + " ", "not a url ::"}})
	return f
}

// A page of another site can make the browser send the session cookie (or
// go through a proxy that signs the browser in by its cookie): such
// state-changing requests are refused when the browser says where they come
// from — a foreign Origin, "null" included, or Sec-Fetch-Site: cross-site.
func TestCrossSiteWritesRefused(t *testing.T) {
	f := crossSiteFixture(t)
	assertion, err := f.signer.SignAssertion(authtest.User("alice", "t-one"), proxyAudience)
	if err != nil {
		t.Fatal(err)
	}
	type credential struct {
		name  string
		apply func(r *http.Request)
	}
	creds := []credential{
		{"cookie", func(r *http.Request) {
			r.RemoteAddr = untrustedPeer
			r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "sess-1"})
			r.Header.Set(CSRFHeader, "csrf-1") // a valid token: the origin alone refuses
		}},
		{"proxy header", func(r *http.Request) {
			r.RemoteAddr = trustedPeer
			r.Header.Set("X-Authenticated-User", "alice")
		}},
		{"proxy assertion", func(r *http.Request) {
			r.RemoteAddr = trustedPeer
			r.Header.Set(assertionHdr, assertion)
		}},
	}
	foreign := []map[string]string{
		{"Origin": "https://evil.example"},
		{"Origin": "null"},
		{"Origin": "https://idflow.test.evil.example"},
		{"Origin": "http://idflow.test"},       // another scheme
		{"Origin": "https://idflow.test:8443"}, // another port
		{"Origin": "https://sub.idflow.test"},  // a sibling: same site, another origin
		{"Origin": "https://idflow.test/base"}, // not an origin
		{"Origin": "https://user@idflow.test"},
		{"Origin": ""},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "Cross-Site"},
		{"Origin": ownOrigin, "Sec-Fetch-Site": "cross-site"},
	}
	allowed := []map[string]string{
		{},
		{"Origin": ownOrigin},
		{"Origin": "https://IDFLOW.test:443"},
		{"Origin": corsOrigin},
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "same-site"},
		{"Sec-Fetch-Site": "none"},
		{"Origin": ownOrigin, "Sec-Fetch-Site": "same-origin"},
	}
	build := func(method string, c credential, hdrs map[string]string) *http.Request {
		r := httptest.NewRequest(method, "/api/v1/facts", nil)
		c.apply(r)
		for k, v := range hdrs {
			r.Header[k] = []string{v}
		}
		return r
	}
	for _, c := range creds {
		for _, hdrs := range foreign {
			for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
				err := mustNotAuth(t, f.a, build(m, c, hdrs), nil, idflow.EFORBIDDEN)
				if !errors.Is(err, ErrCrossSite) {
					t.Fatalf("%s %s %v: err = %v; want ErrCrossSite", c.name, m, hdrs, err)
				}
				if strings.Contains(idflow.ErrorMessage(err), "evil") {
					t.Fatalf("the message echoes the Origin: %q", idflow.ErrorMessage(err))
				}
			}
			// Reads are not refused: the answer cannot be read cross-site
			// without CORS, and a link must keep working.
			if p := mustAuth(t, f.a, build("GET", c, hdrs), nil); p.UserID != "alice" {
				t.Fatalf("%s GET %v: %+v", c.name, hdrs, p)
			}
		}
		for _, hdrs := range allowed {
			if p := mustAuth(t, f.a, build("POST", c, hdrs), nil); p.UserID != "alice" {
				t.Fatalf("%s POST %v: %+v", c.name, hdrs, p)
			}
		}
		// Two Origin headers, one of them foreign: refused.
		r := build("POST", c, map[string]string{"Origin": ownOrigin})
		r.Header.Add("Origin", "https://evil.example")
		mustNotAuth(t, f.a, r, nil, idflow.EFORBIDDEN)
	}

	t.Run("bearer tokens carry no ambient credential", func(t *testing.T) {
		tok := f.iss.Sign(f.iss.OIDC("bob"))
		for _, hdrs := range foreign {
			r := httptest.NewRequest("POST", "/api/v1/facts", nil)
			r.RemoteAddr = untrustedPeer
			r.Header.Set("Authorization", "Bearer "+tok)
			for k, v := range hdrs {
				r.Header[k] = []string{v}
			}
			if p := mustAuth(t, f.a, r, nil); p.UserID != "bob" {
				t.Fatalf("%v: %+v", hdrs, p)
			}
		}
	})
	t.Run("no origins configured: every Origin is foreign", func(t *testing.T) {
		a := New(Config{Sessions: f.a.sessions})
		r := build("POST", creds[0], map[string]string{"Origin": ownOrigin})
		mustNotAuth(t, a, r, nil, idflow.EFORBIDDEN)
		mustAuth(t, a, build("POST", creds[0], nil), nil)
	})
}

// Forward-auth asks about another request: the CSRF and cross-site checks
// follow X-Original-Method (X-Forwarded-Method), and the Origin and
// Sec-Fetch-Site that nginx copies from the client onto the question.
func TestForwardAuthCrossSiteFollowsTheOriginalRequest(t *testing.T) {
	f := crossSiteFixture(t)
	validate := func(method string, hdrs map[string]string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
		r.RemoteAddr = untrustedPeer
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "sess-1"})
		r.Header.Set(CSRFHeader, "csrf-1")
		r.Header.Set("X-Original-Method", method)
		for k, v := range hdrs {
			r.Header.Set(k, v)
		}
		return r
	}
	for _, hdrs := range []map[string]string{{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}} {
		err := mustNotAuth(t, f.a, validate("POST", hdrs), nil, idflow.EFORBIDDEN)
		if !errors.Is(err, ErrCrossSite) {
			t.Fatalf("%v: %v", hdrs, err)
		}
		r := validate("GET", hdrs)
		r.Header.Del("X-Original-Method")
		r.Header.Set("X-Forwarded-Method", "DELETE")
		mustNotAuth(t, f.a, r, nil, idflow.EFORBIDDEN)
		// The same question about a GET is answered.
		mustAuth(t, f.a, validate("GET", hdrs), nil)
	}
	mustAuth(t, f.a, validate("POST", map[string]string{"Origin": ownOrigin}), nil)
}

func TestNormalizeOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://idflow.test":        "https://idflow.test",
		"https://IDFLOW.test:443":    "https://idflow.test",
		"http://idflow.test:80":      "http://idflow.test",
		"http://idflow.test:8080":    "http://idflow.test:8080",
		"https://idflow.test/":       "https://idflow.test",
		"http://[::1]:8080":          "http://[::1]:8080",
		"http://[::1]":               "http://[::1]",
		"http://127.0.0.1:41234":     "http://127.0.0.1:41234",
		"null":                       "",
		"":                           "",
		"file://":                    "",
		"chrome-extension://abcdefg": "",
		"https://idflow.test/x":      "",
		"https://idflow.test?x":      "",
		"https://idflow.test#x":      "",
		"https://u:p@idflow.test":    "",
		"https://":                   "",
		"https://:443":               "",
	} {
		got, ok := normalizeOrigin(in)
		if got != want || ok != (want != "") {
			t.Errorf("normalizeOrigin(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
