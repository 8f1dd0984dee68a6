package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// TestCookiesFor: only a plain-http loopback public URL keeps the bare
// cookie names; https, any other host, or a URL that does not parse gets
// __Host- names with Secure.
func TestCookiesFor(t *testing.T) {
	bare := Cookies{Session: "idflow_session", Login: "idflow_login"}
	host := Cookies{Session: "__Host-idflow_session", Login: "__Host-idflow_login", Secure: true}
	for url, want := range map[string]Cookies{
		"http://127.0.0.1:8080":            bare,
		"http://localhost:8080":            bare,
		"http://[::1]:8080":                bare,
		"http://127.0.0.2":                 bare,
		"https://127.0.0.1:8443":           host,
		"https://localhost":                host,
		"https://idflow.example.com":       host,
		"http://idflow.example.com":        host,
		"http://app.idflow.localhost:8080": host, // a subdomain of localhost has siblings
		"http://localhost.example.com":     host,
		"http://127.0.0.1.nip.io":          host,
		"HTTP://127.0.0.1":                 bare, // url.Parse lowers the scheme
		"ftp://127.0.0.1":                  host,
		"http://[::1":                      host, // does not parse
	} {
		if got := CookiesFor(url); got != want {
			t.Errorf("CookiesFor(%q) = %+v, want %+v", url, got, want)
		}
	}
}

// TestAuthenticatorReadsOnlyItsSessionCookie: configured with the __Host-
// name, the Authenticator never reads a bare idflow_session cookie — the
// one a sibling subdomain can plant with Domain= — even one that names a
// valid session.
func TestAuthenticatorReadsOnlyItsSessionCookie(t *testing.T) {
	sess := fakeSessions{id: "attacker-session", csrf: "c", p: authtest.User("mallory", "t-one")}
	a := New(Config{Sessions: sess, SessionCookie: CookiesFor("https://idflow.example.com").Session})
	req := func(name string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
		r.RemoteAddr = untrustedPeer
		r.AddCookie(&http.Cookie{Name: name, Value: "attacker-session"})
		return r
	}
	mustNotAuth(t, a, req("idflow_session"), nil, idflow.EUNAUTHORIZED)
	if p := mustAuth(t, a, req("__Host-idflow_session"), nil); p.UserID != "mallory" {
		t.Fatalf("the __Host- cookie gave %+v", p)
	}
	// Unconfigured, the bare name is read (plain-http loopback).
	if p := mustAuth(t, New(Config{Sessions: sess}), req("idflow_session"), nil); p.UserID != "mallory" {
		t.Fatalf("the bare cookie gave %+v", p)
	}
}
