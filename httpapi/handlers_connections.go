package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/idflow/idflow"
)

// Connections is the connect flow (package connections implements it).
type Connections interface {
	ListConnections(ctx context.Context, p idflow.Principal) ([]idflow.Connection, error)
	// Connect starts p's authorization-code + PKCE flow and returns the
	// provider URL to send the browser to.
	Connect(ctx context.Context, p idflow.Principal, provider string) (string, error)
	// Callback completes it with the provider's redirect query.
	Callback(ctx context.Context, p idflow.Principal, provider string, q url.Values) (idflow.Connection, error)
	// Disconnect revokes at the provider (best effort) and forgets.
	Disconnect(ctx context.Context, p idflow.Principal, provider string) error
}

type connectionsOut = idflow.List[idflow.Connection]

type connectOut struct {
	AuthorizeURL string `json:"authorize_url"`
}

// connectionRoutes are the /api/v1/connections routes. They exist when
// downstream providers are configured (IDFLOW_PROVIDERS_FILE, or the dev
// provider in --dev); without any there is nothing to connect to.
func (s *Server) connectionRoutes() []route {
	if s.conns == nil {
		return nil
	}
	return []route{
		{method: "GET", pattern: "/api/v1/connections", access: accessUser, summary: "Your downstream connections (their tokens are never shown)", out: connectionsOut{}, serve: s.handleListConnections},
		{method: "POST", pattern: "/api/v1/connections/{provider}/connect", access: accessUser, summary: "Start connecting a provider: authorization code + PKCE, the state bound to you; answers {authorize_url}", out: connectOut{}, serve: s.handleConnect},
		{method: "GET", pattern: "/api/v1/connections/{provider}/callback", access: accessUser, summary: "The provider's redirect (?code&state): the state must be yours; stores your sealed tokens", out: idflow.Connection{}, serve: s.handleConnectCallback},
		{method: "DELETE", pattern: "/api/v1/connections/{provider}", access: accessUser, summary: "Revoke at the provider (best effort) and forget the connection", status: http.StatusNoContent, serve: s.handleDisconnect},
	}
}

func (s *Server) handleListConnections(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	items, err := s.conns.ListConnections(r.Context(), p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, connectionsOut{Items: items})
}

func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	u, err := s.conns.Connect(r.Context(), p, r.PathValue("provider"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, connectOut{AuthorizeURL: u})
}

func (s *Server) handleConnectCallback(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	c, err := s.conns.Callback(r.Context(), p, r.PathValue("provider"), r.URL.Query())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) handleDisconnect(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	if err := s.conns.Disconnect(r.Context(), p, r.PathValue("provider")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// bearerOf returns the token of r's Authorization: Bearer header.
func bearerOf(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
