package httpapi

import (
	"io"
	"log/slog"
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// Identity lifecycle routes (docs/SECURITY.md): personal access tokens, export,
// erasure.

type tokenIn struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresIn int64    `json:"expires_in"` // seconds; absent or 0: 90 days; at most a year
}

// tokenOut is a new personal access token: what is kept of it, and the
// token itself, shown this once.
type tokenOut struct {
	idflow.PersonalToken
	Token string `json:"token"`
}

func lifecycleRoutes(svc *service.Service, log *slog.Logger) []route {
	type tokens = idflow.List[idflow.PersonalToken]
	return []route{
		{method: "GET", pattern: "/api/v1/tokens", access: accessUser, noToken: true, summary: "Your personal access tokens (never the tokens themselves)", out: tokens{}, serve: listed(svc.ListTokens)},
		{method: "POST", pattern: "/api/v1/tokens", access: accessUser, noToken: true, summary: "Create a personal access token {name, scopes (read, write, agent, mcp), expires_in seconds (default 90 days, at most a year)}: the token is in this answer only", in: tokenIn{}, out: tokenOut{}, status: 201, serve: handleCreateToken(svc)},
		{method: "DELETE", pattern: "/api/v1/tokens/{token_id}", access: accessUser, noToken: true, summary: "Revoke a personal access token", status: 204, serve: deleteByID("token_id", svc.RevokeToken)},
		{method: "GET", pattern: "/api/v1/me/export", access: accessUser, summary: "Everything idflow holds about you, as one JSON object, streamed (documents as links to their content)", serve: handleExport(svc, log)},
		{method: "DELETE", pattern: "/api/v1/admin/users/{user_id}", access: accessAdmin, summary: "Erase a user of your tenant (every tenant: platform admin role): rows, files, cache, vault, sessions; the audit chain keeps a keyed hash of the id (audited)", status: 204, serve: deleteByID("user_id", svc.EraseUser)},
	}
}

func handleCreateToken(svc *service.Service) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		var in tokenIn
		if err := decode(r, &in); err != nil {
			return err
		}
		t, raw, err := svc.CreateToken(r.Context(), p, service.TokenRequest{Name: in.Name, Scopes: in.Scopes, ExpiresIn: in.ExpiresIn})
		return answer(w, http.StatusCreated, tokenOut{PersonalToken: t, Token: raw}, err)
	}
}

// handleExport streams the caller's export. Once its first byte is out,
// a failure can no longer be a problem+json: the connection is cut, so
// the client never takes a truncated export for a whole one.
func handleExport(svc *service.Service, log *slog.Logger) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Disposition", `attachment; filename="idflow-export.json"`)
		cw := &countingWriter{w: w}
		err := svc.Export(r.Context(), p, cw)
		if err != nil && cw.n > 0 {
			log.ErrorContext(r.Context(), "export failed after it began", "err", err)
			panic(http.ErrAbortHandler)
		}
		return err
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
