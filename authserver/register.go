package authserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/idflow/idflow"
)

// maxRegistrationBytes bounds a registration request.
const maxRegistrationBytes = 16 << 10

// registration is the client metadata of a registration request (RFC 7591
// §2); fields idflow does not use are ignored.
type registration struct {
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope"`
}

// registered is the answer to a registration (RFC 7591 §3.2.1).
type registered struct {
	ClientID                string   `json:"client_id"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientName              string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope,omitempty"`
}

// parseRegistration checks a registration request body. Every client is
// public: a request for another authentication method is answered with
// "none" (RFC 7591 §3.2.1 lets the server replace values), since a client
// registering anonymously can prove nothing with a secret.
func parseRegistration(body []byte, supported []string) (registration, error) {
	var reg registration
	if err := json.Unmarshal(body, &reg); err != nil {
		return reg, oauthErr("invalid_client_metadata", "the body must be a JSON object of client metadata")
	}
	if len(reg.RedirectURIs) == 0 || len(reg.RedirectURIs) > maxRedirectURIs {
		return reg, oauthErr("invalid_redirect_uri", fmt.Sprintf("register 1 to %d redirect_uris", maxRedirectURIs))
	}
	for _, uri := range reg.RedirectURIs {
		if msg := validRedirectURI(uri); msg != "" {
			return reg, oauthErr("invalid_redirect_uri", msg)
		}
	}
	if !validClientName(reg.ClientName) {
		return reg, oauthErr("invalid_client_metadata", fmt.Sprintf("client_name must be printable text of at most %d bytes", maxClientNameLen))
	}
	for _, g := range reg.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return reg, oauthErr("invalid_client_metadata", "only the authorization_code and refresh_token grants are supported")
		}
	}
	for _, rt := range reg.ResponseTypes {
		if rt != "code" {
			return reg, oauthErr("invalid_client_metadata", "only the code response type is supported")
		}
	}
	if reg.Scope != "" {
		if _, err := grantedScopes(reg.Scope, supported); err != nil {
			return reg, oauthErr("invalid_client_metadata", "scope: "+err.Error())
		}
	}
	return reg, nil
}

// Register serves POST /oauth/register: dynamic client registration for
// public clients (RFC 7591), bounded per peer and in total; a registration
// no user grants access to within RegistrationTTL is forgotten.
func (s *Server) Register(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Access-Control-Allow-Origin", "*") // anonymous: nothing ambient to protect
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return idflow.Errorf(idflow.EMEDIATYPE, "send the client metadata as application/json")
	}
	if res, _ := s.registrations.Allow(r.Context(), peer(r), s.registrationLimit); !res.Allowed {
		retry := res.RetryAfterSeconds()
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		return idflow.Errorf(idflow.ERATELIMIT, "too many registrations from this address; try again in %d s", retry)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRegistrationBytes+1))
	if err != nil {
		return err // a *http.MaxBytesError answers 413
	}
	if len(body) > maxRegistrationBytes {
		return idflow.Errorf(idflow.ETOOLARGE, "client metadata larger than %d bytes", maxRegistrationBytes)
	}
	reg, err := parseRegistration(body, s.cfg.Scopes)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	expires := now.Add(s.cfg.RegistrationTTL)
	c := idflow.OAuthClient{ID: idflow.NewID("mcpc_"), Name: reg.ClientName, RedirectURIs: reg.RedirectURIs, ExpiresAt: &expires}
	if err := s.store.RegisterOAuthClient(r.Context(), c, s.cfg.MaxClients); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "oauth client registered", "client_id", c.ID, "redirect_hosts", redirectHosts(c.RedirectURIs))
	out := registered{ClientID: c.ID, ClientIDIssuedAt: now.Unix(), ClientName: c.Name, RedirectURIs: c.RedirectURIs,
		TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, Scope: reg.Scope}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	return json.NewEncoder(w).Encode(out)
}

func redirectHosts(uris []string) string {
	hosts := make([]string, 0, len(uris))
	for _, u := range uris {
		hosts = append(hosts, redirectHost(u))
	}
	return strings.Join(hosts, " ")
}

// resolveClient answers the client id names: a metadata document's URL,
// or a registration.
func (s *Server) resolveClient(ctx context.Context, id string) (client, error) {
	switch {
	case id == "":
		return client{}, oauthErr("invalid_request", "client_id is required")
	case strings.HasPrefix(id, "https://"):
		return s.docs.get(ctx, id)
	case len(id) > maxClientIDLen:
		return client{}, oauthErr("invalid_client", "unknown client")
	}
	c, err := s.store.GetOAuthClient(ctx, id)
	if idflow.ErrorCode(err) == idflow.ENOTFOUND {
		return client{}, oauthErr("invalid_client", "unknown client (registrations nobody used expire; register again)")
	}
	if err != nil {
		return client{}, err
	}
	return client{ID: c.ID, Name: c.Name, RedirectURIs: c.RedirectURIs}, nil
}

// peer is the address a request came from (its host, without the port).
func peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
