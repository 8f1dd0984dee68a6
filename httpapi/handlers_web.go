package httpapi

import (
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/web"
)

var errNoLogin = idflow.Errorf(idflow.ENOTFOUND, "browser sign-in is not configured (IDFLOW_OIDC_CLIENT_ID)")

func handleLogin(login *web.Login) openHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if login == nil {
			return errNoLogin
		}
		return login.HandleLogin(w, r)
	}
}

func handleCallback(login *web.Login, audit *auditor) openHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if login == nil {
			return errNoLogin
		}
		a, err := login.HandleCallback(w, r)
		if err != nil {
			audit.anonymous(r, "auth.login", idflow.ErrorCode(err), err.Error())
			return err
		}
		audit.account(r, "auth.login", a)
		return nil
	}
}

// handleLogout acts only on the session named by the caller's own cookie,
// and only with that session's CSRF token.
func handleLogout(login *web.Login, audit *auditor) openHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if login == nil {
			return errNoLogin
		}
		a, err := login.HandleLogout(w, r)
		if err != nil {
			audit.anonymous(r, "auth.logout", idflow.ErrorCode(err), err.Error())
			return err
		}
		audit.account(r, "auth.logout", a) // nothing when no session was ended
		return nil
	}
}

func handleUI(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	return web.Asset(w, r, r.PathValue("file"))
}

// sessionCSRF is the CSRF token of a cookie-authenticated request.
func sessionCSRF(login *web.Login, r *http.Request, p idflow.Principal) string {
	if login == nil || p.AuthMethod != idflow.AuthSession {
		return ""
	}
	c, err := r.Cookie(login.Cookies().Session)
	if err != nil {
		return ""
	}
	_, csrf, err := login.Lookup(r.Context(), c.Value)
	if err != nil {
		return ""
	}
	return csrf
}
