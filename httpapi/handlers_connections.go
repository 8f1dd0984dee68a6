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
func connectionRoutes(conns Connections) []route {
	if conns == nil {
		return nil
	}
	return []route{
		{method: "GET", pattern: "/api/v1/connections", access: accessUser, summary: "Your downstream connections (their tokens are never shown)", out: connectionsOut{}, serve: handleListConnections(conns)},
		{method: "POST", pattern: "/api/v1/connections/{provider}/connect", access: accessUser, summary: "Start connecting a provider: authorization code + PKCE, the state bound to you; answers {authorize_url}", out: connectOut{}, serve: handleConnect(conns)},
		{method: "GET", pattern: "/api/v1/connections/{provider}/callback", access: accessUser, summary: "The provider's redirect (?code&state): the state must be yours; stores your sealed tokens", out: idflow.Connection{}, serve: handleConnectCallback(conns)},
		{method: "DELETE", pattern: "/api/v1/connections/{provider}", access: accessUser, summary: "Revoke at the provider (best effort) and forget the connection", status: http.StatusNoContent, serve: handleDisconnect(conns)},
	}
}

func handleListConnections(conns Connections) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		items, err := conns.ListConnections(r.Context(), p)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, connectionsOut{Items: items})
	}
}

func handleConnect(conns Connections) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		u, err := conns.Connect(r.Context(), p, r.PathValue("provider"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, connectOut{AuthorizeURL: u})
	}
}

func handleConnectCallback(conns Connections) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		c, err := conns.Callback(r.Context(), p, r.PathValue("provider"), r.URL.Query())
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, c)
	}
}

func handleDisconnect(conns Connections) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		if err := conns.Disconnect(r.Context(), p, r.PathValue("provider")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
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
