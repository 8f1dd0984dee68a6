package httpapi

import (
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/web"
)

var errNoLogin = idflow.Errorf(idflow.ENOTFOUND, "browser sign-in is not configured (IDFLOW_OIDC_CLIENT_ID)")

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	if s.login == nil {
		return errNoLogin
	}
	return s.login.HandleLogin(w, r)
}

func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) error {
	if s.login == nil {
		return errNoLogin
	}
	a, err := s.login.HandleCallback(w, r)
	if err != nil {
		s.auditAnonymous(r, "auth.login", idflow.ErrorCode(err), err.Error())
		return err
	}
	s.auditAccount(r, "auth.login", a)
	return nil
}

// handleLogout acts only on the session named by the caller's own cookie,
// and only with that session's CSRF token.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) error {
	if s.login == nil {
		return errNoLogin
	}
	a, err := s.login.HandleLogout(w, r)
	if err != nil {
		s.auditAnonymous(r, "auth.logout", idflow.ErrorCode(err), err.Error())
		return err
	}
	s.auditAccount(r, "auth.logout", a) // nothing when no session was ended
	return nil
}

func (s *Server) handleUI(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	return web.Asset(w, r, r.PathValue("file"))
}

// sessionCSRF is the CSRF token of a cookie-authenticated request.
func (s *Server) sessionCSRF(r *http.Request, p idflow.Principal) string {
	if s.login == nil || p.AuthMethod != idflow.AuthSession {
		return ""
	}
	c, err := r.Cookie(s.login.Cookies().Session)
	if err != nil {
		return ""
	}
	_, csrf, err := s.login.Lookup(r.Context(), c.Value)
	if err != nil {
		return ""
	}
	return csrf
}
