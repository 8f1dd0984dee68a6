package httpapi

import (
	"context"
	"net/http"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/web"
)

// AuthServer is idflow's own authorization server for /mcp (package
// authserver), when IDFLOW_MCP_AUTH=idflow.
type AuthServer interface {
	ServeMetadata(w http.ResponseWriter, r *http.Request) error
	// Authorize answers the consent page (or the client's redirect URI with
	// an error) to p's browser; csrf is its session's CSRF token.
	Authorize(w http.ResponseWriter, r *http.Request, p idflow.Principal, csrf string) error
	// Consent takes p's answer on the consent page.
	Consent(w http.ResponseWriter, r *http.Request, p idflow.Principal) error
	Token(w http.ResponseWriter, r *http.Request) error
	Register(w http.ResponseWriter, r *http.Request) error
	ListGrants(ctx context.Context, p idflow.Principal) ([]idflow.OAuthGrant, error)
	RevokeGrant(ctx context.Context, p idflow.Principal, id string) error
}

type grantsOut = idflow.List[idflow.OAuthGrant]

// oauthPublicPaths are the authorization server's endpoints that MCP
// clients running in a browser (the MCP Inspector) call from their own
// origin. None takes an ambient credential, so any origin may read them.
var oauthPublicPaths = map[string]bool{
	"/.well-known/oauth-authorization-server": true, "/oauth/token": true, "/oauth/register": true,
}

// oauthRoutes are the authorization server's routes; none without it.
func oauthRoutes(as AuthServer, login *web.Login) []route {
	if as == nil {
		return nil
	}
	return []route{
		{method: "GET", pattern: "/.well-known/oauth-authorization-server", access: accessOpen, summary: "RFC 8414 metadata of idflow's authorization server for /mcp (IDFLOW_MCP_AUTH=idflow)", open: as.ServeMetadata},
		{method: "GET", pattern: "/oauth/authorize", access: accessUser, browser: true, summary: "OAuth authorization (code + PKCE S256, resource <public url>/mcp): a signed-out browser signs in first; answers the consent page naming the client", serve: handleAuthorize(as, login)},
		{method: "POST", pattern: "/oauth/authorize", access: accessUser, summary: "The consent page's answer (form: the request's parameters and decision=allow|deny; X-CSRF-Token): {redirect_to}", serve: as.Consent},
		{method: "POST", pattern: "/oauth/token", access: accessOpen, summary: "OAuth token endpoint (form): authorization_code with PKCE, refresh_token with rotation; public clients", open: as.Token},
		{method: "POST", pattern: "/oauth/register", access: accessOpen, summary: "RFC 7591 dynamic client registration (public clients; bounded, rate-limited; unused registrations expire)", status: http.StatusCreated, open: as.Register},
		{method: "GET", pattern: "/api/v1/oauth/grants", access: accessUser, summary: "The MCP clients you allowed to act as you (active grants)", out: grantsOut{}, serve: handleListGrants(as)},
		{method: "DELETE", pattern: "/api/v1/oauth/grants/{grant_id}", access: accessUser, summary: "Revoke a grant: the client's refresh tokens die at once, its access tokens on their next request", status: http.StatusNoContent, serve: handleRevokeGrant(as)},
	}
}

func handleAuthorize(as AuthServer, login *web.Login) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		return as.Authorize(w, r, p, sessionCSRF(login, r, p))
	}
}

func handleListGrants(as AuthServer) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		items, err := as.ListGrants(r.Context(), p)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, grantsOut{Items: items})
	}
}

func handleRevokeGrant(as AuthServer) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		if err := as.RevokeGrant(r.Context(), p, r.PathValue("grant_id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
