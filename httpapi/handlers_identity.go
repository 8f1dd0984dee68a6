package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			s.log.WarnContext(ctx, "not ready", "err", err)
			return idflow.Errorf(idflow.EUNAVAILABLE, "not ready")
		}
	}
	verify := "off"
	if s.cfg.AllowVerify {
		verify = "allowed" // idflow verify refuses to run unless it reads this
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "verify": verify})
}

func (s *Server) handleAssertionJWKS(w http.ResponseWriter, r *http.Request) error {
	if s.signer == nil {
		return idflow.Errorf(idflow.ENOTFOUND, "no assertion keys")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	return writeJSONNoStore(w, s.signer.JWKS())
}

// me is the JSON shape of GET /api/v1/me (DESIGN §4).
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
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	out := me{UserID: p.UserID, TenantID: p.TenantID, Email: p.Email, Name: p.Name,
		Roles: nonNil(p.Roles), Groups: nonNil(p.Groups), GroupsOverage: p.GroupsOverage, Scopes: nonNil(p.Scopes),
		Issuer: p.Issuer, Kind: string(p.Kind), AuthMethod: string(p.AuthMethod), CSRFToken: s.sessionCSRF(r, p)}
	if !p.ExpiresAt.IsZero() {
		t := p.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return writeJSON(w, http.StatusOK, out)
}

// handleValidate is forward-auth: the proxy asks whether the request it holds
// is authenticated, and forwards the identity headers we answer with.
func (s *Server) handleValidate(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	h := w.Header()
	h.Set("X-Authenticated-User", p.UserID)
	h.Set("X-Authenticated-Email", p.Email)
	h.Set("X-Authenticated-Name", p.Name)
	h.Set("X-Authenticated-Tenant", p.TenantID)
	// Lists of names, quoted where a name needs it ("Sales, EMEA"); the
	// proxy reader of auth decodes the same way.
	h.Set("X-Authenticated-Roles", auth.FormatList(p.Roles))
	h.Set("X-Authenticated-Groups", auth.FormatList(p.Groups))
	if s.signer != nil {
		a, err := s.signer.SignAssertion(p, s.cfg.PublicURL)
		if err != nil {
			return err
		}
		h.Set("X-Idflow-Assertion", a)
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
