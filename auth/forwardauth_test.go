package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// A forward-auth subrequest is always a GET; the method of the request the
// proxy holds comes in X-Original-Method (nginx) or X-Forwarded-Method
// (Traefik, Caddy). A cookie session asking on behalf of a POST needs its
// CSRF token like the POST itself would (deploy/nginx/idflow-forward-auth.conf).
func TestForwardAuthCSRFFollowsTheOriginalMethod(t *testing.T) {
	sess := fakeSessions{id: "sess-1", csrf: "csrf-1", p: authtest.User("alice", "t-one")}
	f := newAuthFixture(t, sess)
	validate := func(header, method, csrf string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
		r.RemoteAddr = untrustedPeer
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "sess-1"})
		if header != "" {
			r.Header.Set(header, method)
		}
		if csrf != "" {
			r.Header.Set(CSRFHeader, csrf)
		}
		return r
	}
	for _, h := range originalMethodHeaders {
		for _, m := range []string{"POST", "put", " DELETE ", "PATCH", "PROPFIND"} {
			err := mustNotAuth(t, f.a, validate(h, m, ""), nil, idflow.EFORBIDDEN)
			if !errors.Is(err, ErrCSRF) {
				t.Fatalf("%s: %s without the token: %v; want ErrCSRF", h, m, err)
			}
			mustNotAuth(t, f.a, validate(h, m, "csrf-2"), nil, idflow.EFORBIDDEN)
			if p := mustAuth(t, f.a, validate(h, m, "csrf-1"), nil); p.UserID != "alice" {
				t.Fatalf("%s: %s with the token: %+v", h, m, p)
			}
		}
		for _, m := range []string{"GET", "HEAD", "OPTIONS", ""} {
			if p := mustAuth(t, f.a, validate(h, m, ""), nil); p.UserID != "alice" {
				t.Fatalf("%s: %q: %+v", h, m, p)
			}
		}
	}
	// The header only ever tightens: a POST that claims to be a GET still
	// needs the token.
	r := httptest.NewRequest(http.MethodPost, "/api/v1/facts", nil)
	r.RemoteAddr = untrustedPeer
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "sess-1"})
	r.Header.Set("X-Original-Method", "GET")
	mustNotAuth(t, f.a, r, nil, idflow.EFORBIDDEN)
	// Bearer tokens need no CSRF token, whatever the original method.
	b := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
	b.RemoteAddr = untrustedPeer
	b.Header.Set("Authorization", "Bearer "+f.iss.Token(f.iss.OIDC("bob")))
	b.Header.Set("X-Original-Method", "POST")
	if p := mustAuth(t, f.a, b, nil); p.UserID != "bob" {
		t.Fatalf("bearer on a POST's behalf: %+v", p)
	}
}
