package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/web"
)

func handleHealthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 503 while ready fails (nil: always ready).
// handleReadyz answers whether the server is ready, and whether `idflow
// verify` may run against it (allowVerify: IDFLOW_ALLOW_VERIFY).
func handleReadyz(ready func(ctx context.Context) error, allowVerify bool, log *slog.Logger) openHandler {
	verify := "off"
	if allowVerify {
		verify = "allowed" // idflow verify refuses to run unless it reads this
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
				log.WarnContext(ctx, "not ready", "err", err)
				return idflow.Errorf(idflow.EUNAVAILABLE, "not ready")
			}
		}
		return writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "verify": verify})
	}
}

func handleAssertionJWKS(signer *auth.Signer) openHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if signer == nil {
			return idflow.Errorf(idflow.ENOTFOUND, "no assertion keys")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		return writeJSONNoStore(w, signer.JWKS())
	}
}

// me is the JSON shape of GET /api/v1/me (its fields: docs/ARCHITECTURE.md).
type me struct {
	UserID        string     `json:"user_id"`
	TenantID      string     `json:"tenant_id"`
	Email         string     `json:"email"`
	Name          string     `json:"name"`
	Roles         []string   `json:"roles"`
	Groups        []string   `json:"groups"`
	GroupsOverage bool       `json:"groups_overage"`
	Scopes        []string   `json:"scopes"`
	Issuer        string     `json:"issuer"`
	Kind          string     `json:"kind"`
	AuthMethod    string     `json:"auth_method"`
	ExpiresAt     *time.Time `json:"expires_at"`
	CSRFToken     string     `json:"csrf_token,omitempty"` // browser sessions only: send it as X-CSRF-Token on writes

	// Where groups came from: the token (or proxy header), and the
	// directory over SCIM; groups is both, as the policy counts them.
	TokenGroups     []string `json:"token_groups"`
	DirectoryGroups []string `json:"directory_groups"`
}

// handleMe answers the caller's Principal; with a browser session, its
// CSRF token too.
func handleMe(login *web.Login) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		out := me{UserID: p.UserID, TenantID: p.TenantID, Email: p.Email, Name: p.Name,
			Roles: nonNil(p.Roles), Groups: nonNil(p.Groups), GroupsOverage: p.GroupsOverage, Scopes: nonNil(p.Scopes),
			Issuer: p.Issuer, Kind: string(p.Kind), AuthMethod: string(p.AuthMethod), CSRFToken: sessionCSRF(login, r, p),
			TokenGroups: nonNil(p.Groups), DirectoryGroups: nonNil(p.DirectoryGroups)}
		if p.DirectoryGroups != nil {
			out.TokenGroups = nonNil(p.TokenGroups)
		}
		if !p.ExpiresAt.IsZero() {
			t := p.ExpiresAt.UTC()
			out.ExpiresAt = &t
		}
		return writeJSON(w, http.StatusOK, out)
	}
}

// handleValidate is forward-auth: the proxy asks whether the request it holds
// is authenticated, and forwards the identity headers we answer with, and
// an assertion signed for audience (nil signer: none). authn caches the
// assertion per verified token (auth/assertion.go).
func handleValidate(authn *auth.Authenticator, signer *auth.Signer, audience string) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		// Lists of names, quoted where a name needs it ("Sales, EMEA"); the
		// proxy reader of auth decodes the same way.
		vals := [...]string{p.UserID, p.Email, p.Name, p.TenantID, auth.FormatList(p.Roles), auth.FormatList(p.Groups), "no-store", ""}
		if signer != nil {
			a, err := authn.Assertion(r, p, signer, audience)
			if err != nil {
				return err
			}
			vals[7] = a
		}
		// Every value a slice of one array: one allocation instead of eight.
		v := vals[:]
		h := w.Header()
		h["X-Authenticated-User"] = v[0:1:1]
		h["X-Authenticated-Email"] = v[1:2:2]
		h["X-Authenticated-Name"] = v[2:3:3]
		h["X-Authenticated-Tenant"] = v[3:4:4]
		h["X-Authenticated-Roles"] = v[4:5:5]
		h["X-Authenticated-Groups"] = v[5:6:6]
		h["Cache-Control"] = v[6:7:7]
		if signer != nil {
			h["X-Idflow-Assertion"] = v[7:8:8]
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
