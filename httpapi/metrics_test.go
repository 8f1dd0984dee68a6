package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/auth/authtest"
)

// sampleLog is an Observer that keeps every sample.
type sampleLog []RequestSample

func (l *sampleLog) ObserveRequest(s RequestSample) { *l = append(*l, s) }

func TestRefusalReasons(t *testing.T) {
	for _, tc := range []struct {
		method string
		err    error
		want   string
	}{
		{"bearer", nil, RefusalNone},
		{"none", idflow.Errorf(idflow.EUNAUTHORIZED, "authentication required"), RefusalNoCredentials},
		{"bearer", idflow.WrapError(idflow.EUNAUTHORIZED, "invalid token", errors.New("signature")), RefusalInvalidToken},
		{"bearer", idflow.WrapError(idflow.EUNAUTHORIZED, "token expired", auth.ErrTokenExpired), RefusalExpired},
		{"session", idflow.Errorf(idflow.EUNAUTHORIZED, "session ended"), RefusalInvalidSession},
		{"proxy_header", idflow.WrapError(idflow.EUNAUTHORIZED, "spoofed", auth.ErrSpoofedHeader), RefusalSpoofedHeader},
		{"bearer", idflow.WrapError(idflow.EUNAUTHORIZED, "spoofed", auth.ErrSpoofedHeader), RefusalSpoofedHeader},
		{"session", idflow.WrapError(idflow.EFORBIDDEN, "csrf", auth.ErrCSRF), RefusalCSRF},
		{"bearer", idflow.WrapError(idflow.EFORBIDDEN, "scope", auth.ErrInsufficientScope), RefusalInsufficientScope},
		{"bearer", idflow.Errorf(idflow.EFORBIDDEN, "app-only tokens cannot act as a user"), RefusalForbidden},
		{"bearer", idflow.WrapError(idflow.EUNAVAILABLE, "key set unavailable", errors.New("dial")), RefusalUnavailable},
		{"bearer", fmt.Errorf("something else: %w", errors.New("x")), RefusalOther},
	} {
		if got := refusalLabel(tc.method, tc.err); got != tc.want {
			t.Errorf("refusalLabel(%s, %v) = %q; want %q", tc.method, tc.err, got, tc.want)
		}
	}
}

func TestLabelsAreBounded(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "DELETE": "DELETE", "get": "other", "PROPFIND": "other", "X-alice@example.com": "other"} {
		if got := methodLabel(in); got != want {
			t.Errorf("methodLabel(%q) = %q; want %q", in, got, want)
		}
	}
	for in, want := range map[int]string{0: "2xx", 101: "1xx", 200: "2xx", 302: "3xx", 404: "4xx", 503: "5xx", 99: "other", 600: "other", 999: "other"} {
		if got := statusClass(in); got != want {
			t.Errorf("statusClass(%d) = %q; want %q", in, got, want)
		}
	}
	s := New(Config{}, Deps{Authn: auth.New(auth.Config{})})
	var refused idflow.Principal // what authenticate returns with an error
	for _, tc := range []struct {
		name string
		set  func(r *http.Request)
		want string
	}{
		{"nothing", func(*http.Request) {}, AuthNone},
		{"authorization", func(r *http.Request) { r.Header.Set("Authorization", "Bearer x") }, "bearer"},
		{"subprotocol", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "idflow.v1, bearer.x") }, "bearer"},
		{"query", func(r *http.Request) { r.URL.RawQuery = "access_token=x" }, "bearer"},
		{"cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: "x"}) }, "session"},
		{"host cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "__Host-" + auth.SessionCookie, Value: "x"}) }, "session"},
		{"proxy header", func(r *http.Request) { r.Header.Set(auth.DefaultProxyUserHeader, "mallory") }, "proxy_header"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
		tc.set(r)
		if got := s.authLabel(r, refused); got != tc.want {
			t.Errorf("%s: authLabel = %q; want %q", tc.name, got, tc.want)
		}
	}
	// An authenticated request is labelled by its Principal, whatever else
	// it carries.
	r := httptest.NewRequest(http.MethodGet, "/api/v1/me", nil)
	r.Header.Set("Authorization", "Bearer x")
	p := authtest.User("alice", "t-one")
	p.AuthMethod = idflow.AuthProxyAssertion
	if got := s.authLabel(r, p); got != "proxy_assertion" {
		t.Errorf("authLabel of a proxy-assertion Principal = %q", got)
	}
}

// TestMeasureSamplesByPattern: requests are sampled under their route
// pattern (or "unmatched"), never their path; without an observer nothing
// is wrapped.
func TestMeasureSamplesByPattern(t *testing.T) {
	if s := New(Config{}, Deps{}); s.obs != nil {
		t.Fatal("an observer without Deps.Observer")
	}
	var log sampleLog
	s := New(Config{}, Deps{Authn: auth.New(auth.Config{}), Observer: &log})
	for _, path := range []string{"/healthz", "/api/v1/apps/app_secretid123", "/no/such/path/alice@example.com", "/metrics"} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/healthz", nil))
	want := []RequestSample{
		{Route: "/healthz", Method: "GET", Status: "2xx", Auth: AuthNone, Refusal: RefusalNone},
		{Route: "/api/v1/apps/{app_id}", Method: "GET", Status: "4xx", Auth: AuthNone, Refusal: RefusalNoCredentials},
		{Route: RouteUnmatched, Method: "GET", Status: "4xx", Auth: AuthNone, Refusal: RefusalNone},
		{Route: "/metrics", Method: "GET", Status: "4xx", Auth: AuthNone, Refusal: RefusalNoCredentials},
		{Route: "/healthz", Method: "other", Status: "4xx", Auth: AuthNone, Refusal: RefusalNone},
	}
	if len(log) != len(want) {
		t.Fatalf("%d samples; want %d: %+v", len(log), len(want), log)
	}
	for i, got := range log {
		got.Duration = 0
		if got != want[i] {
			t.Errorf("sample %d = %+v; want %+v", i, got, want[i])
		}
	}
}
