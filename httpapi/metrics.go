package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// Observer receives one sample per request (package metrics implements it
// for Prometheus). Every field of a sample comes from a small fixed set —
// a route pattern of routes.go, never the raw path — so no user id, email,
// token or object id can reach a label, and the number of series stays
// bounded whatever clients send.
type Observer interface {
	ObserveRequest(RequestSample)
}

// RequestSample describes one request for monitoring.
type RequestSample struct {
	Route    string // a pattern of routes.go (or of the dev issuer), or RouteUnmatched
	Method   string // GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, or "other"
	Status   string // "1xx" … "5xx"
	Auth     string // an idflow.AuthMethod, or AuthNone
	Refusal  string // a Refusal… reason, or RefusalNone
	Duration time.Duration
}

// RouteUnmatched is the route of a request that matches no pattern.
const RouteUnmatched = "unmatched"

// AuthNone is the auth method of a request that authenticated no one: an
// open route, or one refused before any credential was presented.
const AuthNone = "none"

// Why authentication or authorization refused a request.
const (
	RefusalNone              = "none"               // not refused (the handler may still fail)
	RefusalNoCredentials     = "no_credentials"     // nothing presented
	RefusalInvalidToken      = "invalid_token"      // a bearer token that does not verify
	RefusalExpired           = "expired"            // a bearer token past exp
	RefusalInvalidSession    = "invalid_session"    // an unknown or ended browser session
	RefusalSpoofedHeader     = "spoofed_header"     // identity headers from an untrusted peer
	RefusalCSRF              = "csrf"               // a cookie request without its CSRF token or Origin
	RefusalInsufficientScope = "insufficient_scope" // a valid token without the required scope
	RefusalForbidden         = "forbidden"          // a known caller without the kind, role or client allowlisting
	RefusalUnavailable       = "unavailable"        // the key set could not be reached
	RefusalOther             = "other"
)

// measure wraps the handler of one route pattern so that every request to
// it becomes a sample. Without an observer it is h itself.
func (s *Server) measure(route string, h http.Handler) http.Handler {
	if s.obs == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		mw := &measuredWriter{ResponseWriter: w, auth: AuthNone, refusal: RefusalNone}
		h.ServeHTTP(mw, r)
		s.obs.ObserveRequest(RequestSample{
			Route: route, Method: methodLabel(r.Method), Status: statusClass(mw.status),
			Auth: mw.auth, Refusal: mw.refusal, Duration: time.Since(start),
		})
	})
}

// noteAuth records on w, when it is measured, how r was authenticated as
// p, or why it was refused with err.
func (s *Server) noteAuth(w http.ResponseWriter, r *http.Request, p idflow.Principal, err error) {
	mw, ok := w.(*measuredWriter)
	if !ok {
		return
	}
	mw.auth = s.authLabel(r, p)
	mw.refusal = refusalLabel(mw.auth, err)
}

// measuredWriter records the status of a response and what authentication
// made of its request.
type measuredWriter struct {
	http.ResponseWriter
	status        int
	auth, refusal string
}

func (w *measuredWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *measuredWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack (WebSockets).
func (w *measuredWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other" // a client may send any token as a method
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClass(code int) string {
	if code == 0 {
		code = http.StatusOK // the handler wrote nothing: net/http answers 200
	}
	if i := code/100 - 1; i >= 0 && i < len(statusClasses) {
		return statusClasses[i]
	}
	return "other"
}

// authLabel is how r was authenticated: the Principal's method, or the kind
// of credential r presented when it was refused.
func (s *Server) authLabel(r *http.Request, p idflow.Principal) string {
	switch p.AuthMethod {
	case idflow.AuthBearer, idflow.AuthSession, idflow.AuthProxyHeader, idflow.AuthProxyAssertion, idflow.AuthPersonalToken:
		return string(p.AuthMethod)
	}
	if r.Header.Get("Authorization") != "" || r.URL.Query().Has("access_token") {
		return string(idflow.AuthBearer)
	}
	for _, proto := range wsProtocols(r) {
		if strings.HasPrefix(proto, wsBearerPrefix) {
			return string(idflow.AuthBearer)
		}
	}
	for _, c := range r.Cookies() {
		if strings.HasSuffix(c.Name, auth.SessionCookie) { // with or without __Host-
			return string(idflow.AuthSession)
		}
	}
	if s.authn != nil && s.authn.ClaimsProxyIdentity(r) {
		return string(idflow.AuthProxyHeader)
	}
	return AuthNone
}

// refusalLabel maps an authentication or authorization error to its reason.
func refusalLabel(method string, err error) string {
	switch {
	case err == nil:
		return RefusalNone
	case errors.Is(err, auth.ErrSpoofedHeader):
		return RefusalSpoofedHeader
	case errors.Is(err, auth.ErrCSRF):
		return RefusalCSRF
	case errors.Is(err, auth.ErrInsufficientScope):
		return RefusalInsufficientScope
	case errors.Is(err, auth.ErrTokenExpired):
		return RefusalExpired
	}
	switch idflow.ErrorCode(err) {
	case idflow.EUNAUTHORIZED:
		switch method {
		case AuthNone:
			return RefusalNoCredentials
		case string(idflow.AuthSession):
			return RefusalInvalidSession
		}
		return RefusalInvalidToken
	case idflow.EFORBIDDEN:
		return RefusalForbidden
	case idflow.EUNAVAILABLE:
		return RefusalUnavailable
	}
	return RefusalOther
}

// OpenWebSockets reports how many run WebSockets are open on this server
// (for the idflow_websockets_open gauge).
func (s *Server) OpenWebSockets() int {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	n := 0
	for _, c := range s.wsOpen {
		n += c
	}
	return n
}

// handleMetrics serves the Prometheus exposition to allowlisted app-only
// callers; without a metrics handler the route does not exist.
func handleMetrics(metrics http.Handler) handler {
	return func(w http.ResponseWriter, r *http.Request, _ idflow.Principal) error {
		if metrics == nil {
			return idflow.Errorf(idflow.ENOTFOUND, "no such route")
		}
		metrics.ServeHTTP(w, r)
		return nil
	}
}
