package httpapi

import (
	"errors"
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// access is who may call a route. Every route names one; there is no default.
type access int

const (
	accessOpen     access = iota + 1 // no credentials (DESIGN §1 invariant 1 lists them)
	accessAny                        // any verified Principal, user or app
	accessUser                       // a verified user; app-only tokens get 403
	accessAdmin                      // a user with the admin role
	accessInternal                   // an app-only token of an allowlisted client
)

// handler serves an authenticated route. It never sees a request without a
// verified Principal, and returns errors instead of writing them.
type handler func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error

// openHandler serves a route that needs no credentials.
type openHandler func(w http.ResponseWriter, r *http.Request) error

// route is one entry of the API surface. The OpenAPI document and the
// authorization matrix test are generated from this table.
type route struct {
	method  string
	pattern string
	access  access
	summary string
	body    int64 // body limit override; 0 = Config.MaxBodyBytes
	serve   handler
	open    openHandler
}

// routes is the whole API surface of idflow.
func (s *Server) routes() []route {
	rs := []route{
		{method: "GET", pattern: "/healthz", access: accessOpen, summary: "Liveness", open: s.handleHealthz},
		{method: "GET", pattern: "/readyz", access: accessOpen, summary: "Readiness: store reachable", open: s.handleReadyz},
		{method: "GET", pattern: "/.well-known/idflow/jwks.json", access: accessOpen, summary: "Keys of X-Idflow-Assertion", open: s.handleAssertionJWKS},

		{method: "GET", pattern: "/api/v1/me", access: accessAny, summary: "The caller's Principal", serve: s.handleMe},
		{method: "GET", pattern: "/auth/validate", access: accessUser, summary: "Forward-auth for nginx, Caddy, Traefik", serve: s.handleValidate},
	}
	return rs
}

// mux registers every route, grouped by path so that a wrong method answers
// 405 as problem+json, and an unknown path 404.
func (s *Server) mux() http.Handler {
	mux := http.NewServeMux()
	byPath := map[string]map[string]http.Handler{}
	var order []string
	for _, rt := range s.routes() {
		if byPath[rt.pattern] == nil {
			byPath[rt.pattern] = map[string]http.Handler{}
			order = append(order, rt.pattern)
		}
		byPath[rt.pattern][rt.method] = s.wrap(rt)
	}
	for _, pattern := range order {
		methods := byPath[pattern]
		mux.Handle(pattern, methodDispatch(methods))
	}
	if s.devIdP != nil {
		mux.Handle("/dev/idp/", s.devIdP)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, idflow.ENOTFOUND, "no such route")
	})
	return mux
}

func methodDispatch(methods map[string]http.Handler) http.Handler {
	allow := ""
	for m := range methods {
		if allow != "" {
			allow += ", "
		}
		allow += m
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = methods[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", allow)
			writeProblem(w, http.StatusMethodNotAllowed, idflow.EINVALID, "method not allowed")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// wrap authenticates and authorizes a route before its handler runs.
func (s *Server) wrap(rt route) http.Handler {
	limit := rt.body
	if limit == 0 {
		limit = s.cfg.MaxBodyBytes
	}
	if rt.access == accessOpen {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			if err := rt.open(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		p, err := s.authenticate(r, rt.access)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		ctx := idflow.NewContext(r.Context(), p)
		setLogUser(ctx, p.UserID)
		r = r.WithContext(ctx)
		if err := rt.serve(w, r, p); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authenticate returns the verified Principal of r if it may use a route of
// the given access level.
func (s *Server) authenticate(r *http.Request, a access) (p idflow.Principal, err error) {
	p, err = s.authn.Authenticate(r, s.cfg.APIAudiences)
	if err != nil {
		s.auditAuthFailure(r, err)
		return p, err
	}
	if err = s.authorize(p, a); err != nil {
		s.auditDenial(r, &p, "authorize", idflow.ErrorMessage(err))
		return p, err
	}
	s.touchUser(r.Context(), p)
	return p, nil
}

// auditAuthFailure audits refused credentials. A request that simply came
// without any is only logged, so anonymous noise cannot flood the audit chain.
func (s *Server) auditAuthFailure(r *http.Request, err error) {
	switch {
	case errors.Is(err, auth.ErrSpoofedHeader):
		s.auditDenial(r, nil, "authenticate", "spoofed identity header")
	case errors.Is(err, auth.ErrCSRF):
		s.auditDenial(r, nil, "authenticate", "csrf token missing or wrong")
	case r.Header.Get("Authorization") != "" || idflow.ErrorCode(err) != idflow.EUNAUTHORIZED:
		s.auditDenial(r, nil, "authenticate", err.Error())
	default:
		s.log.DebugContext(r.Context(), "no credentials", "path", r.URL.Path)
	}
}

// authorize checks a verified Principal against an access level.
func (s *Server) authorize(p idflow.Principal, a access) error {
	switch a {
	case accessAny:
		return nil
	case accessUser:
		if p.Kind != idflow.KindUser {
			return idflow.Errorf(idflow.EFORBIDDEN, "app-only tokens cannot act as a user")
		}
		return nil
	case accessAdmin:
		if p.Kind != idflow.KindUser {
			return idflow.Errorf(idflow.EFORBIDDEN, "app-only tokens cannot act as a user")
		}
		if !p.HasRole(s.cfg.AdminRole) {
			return idflow.Errorf(idflow.EFORBIDDEN, "the %s role is required", s.cfg.AdminRole)
		}
		return nil
	case accessInternal:
		if p.Kind != idflow.KindApp {
			return idflow.Errorf(idflow.EFORBIDDEN, "only app-only tokens may call internal routes")
		}
		if !containsString(s.cfg.InternalClients, p.ClientID) {
			return idflow.Errorf(idflow.EFORBIDDEN, "this client is not allowed on internal routes")
		}
		if s.cfg.InternalRole != "" && !p.HasRole(s.cfg.InternalRole) {
			return idflow.Errorf(idflow.EFORBIDDEN, "the %s app role is required", s.cfg.InternalRole)
		}
		return nil
	}
	return idflow.Errorf(idflow.EFORBIDDEN, "route has no access level")
}

func containsString(ss []string, s string) bool {
	if s == "" {
		return false
	}
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
