// Package authserver is idflow's own OAuth 2.1 authorization server for
// the /mcp resource (IDFLOW_MCP_AUTH=idflow): MCP clients discover it
// through the resource's RFC 9728 metadata, register (RFC 7591) or name
// themselves by a Client ID Metadata Document, send the user through
// /oauth/authorize — where idflow's own browser login (the upstream IdP)
// signs them in and a consent page names the client — and get short-lived
// access tokens for <public url>/mcp signed with a key published in
// idflow's JWKS.
//
// The identity in those tokens is never the client's to choose: sub is the
// user id of the signed-in browser session, which came from the upstream
// IdP's verified token, and tid, email, name, roles and groups come with
// it. Clients are public (PKCE S256, no secret); codes and refresh tokens
// are stored hashed, single-use, bound to their client, redirect URI and
// resource; a refresh token presented twice revokes its grant.
package authserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/ratelimit"
)

// Paths of the authorization server's endpoints.
const (
	MetadataPath  = "/.well-known/oauth-authorization-server"
	AuthorizePath = "/oauth/authorize"
	TokenPath     = "/oauth/token"
	RegisterPath  = "/oauth/register"
)

// Config configures the authorization server.
type Config struct {
	// Issuer is idflow's public URL: the iss of its tokens and the base of
	// its endpoints (RFC 8414: metadata at Issuer + MetadataPath).
	Issuer string
	// Resource is the one resource tokens are issued for: <public url>/mcp.
	Resource string
	// Scopes are the scopes a client may ask for (the resource's); a
	// request naming none gets them all.
	Scopes []string
	// AccessTokenTTL is an access token's lifetime (default 10 minutes).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is a refresh token's lifetime; each use rotates it
	// (default 30 days).
	RefreshTokenTTL time.Duration
	// RegistrationTTL is how long a registration lives unless a user grants
	// it access (default 24 hours).
	RegistrationTTL time.Duration
	// MaxClients bounds the registrations kept (default 10,000).
	MaxClients int
	// RegistrationsPerMinute bounds the registrations per peer address and
	// minute (default 10; a token bucket of as many, refilled over the
	// minute).
	RegistrationsPerMinute int
	// Fetch configures how Client ID Metadata Documents are fetched.
	Fetch FetchConfig
	// Now is the clock (tests).
	Now func() time.Time
}

// Deps are the authorization server's collaborators.
type Deps struct {
	Store idflow.OAuthStore
	// Tokens signs access tokens: a key of its own, published in the JWKS
	// next to the assertion key (auth.DeriveECKey, Signer.AlsoPublish).
	Tokens *auth.Signer
	// Audit records grants, revocations and refused token requests.
	Audit func(ctx context.Context, p idflow.Principal, action, object string, err error)
	Log   *slog.Logger
}

// Server is the authorization server.
type Server struct {
	cfg    Config
	store  idflow.OAuthStore
	tokens *auth.Signer
	audit  func(ctx context.Context, p idflow.Principal, action, object string, err error)
	log    *slog.Logger
	docs   *documents // Client ID Metadata Documents, fetched and cached
	// registrations are the per-peer buckets of POST /oauth/register.
	registrations     *ratelimit.Memory
	registrationLimit ratelimit.Limit
	metadata          []byte
}

// Supported OIDC-only scopes a client may add to its request; they are
// dropped, never granted (refresh tokens are issued anyway).
var ignoredScopes = []string{"openid", "profile", "email", "offline_access"}

// New returns the authorization server.
func New(cfg Config, d Deps) (*Server, error) {
	if cfg.Issuer == "" || cfg.Resource == "" {
		return nil, errors.New("authserver: an issuer and a resource are required")
	}
	if d.Store == nil || d.Tokens == nil {
		return nil, errors.New("authserver: a store and a token signer are required")
	}
	if d.Tokens.Issuer() != cfg.Issuer {
		return nil, errors.New("authserver: the token signer must name the issuer")
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = 10 * time.Minute
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = 30 * 24 * time.Hour
	}
	if cfg.RegistrationTTL <= 0 {
		cfg.RegistrationTTL = 24 * time.Hour
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 10000
	}
	if cfg.RegistrationsPerMinute <= 0 {
		cfg.RegistrationsPerMinute = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Audit == nil {
		d.Audit = func(context.Context, idflow.Principal, string, string, error) {}
	}
	docs, err := newDocuments(cfg.Fetch, cfg.Now)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, store: d.Store, tokens: d.Tokens, audit: d.Audit, log: d.Log, docs: docs,
		registrations:     ratelimit.NewMemory(cfg.Now),
		registrationLimit: ratelimit.Limit{Count: cfg.RegistrationsPerMinute, Per: time.Minute, Burst: cfg.RegistrationsPerMinute}}
	meta := map[string]any{
		"issuer":                                         cfg.Issuer,
		"authorization_endpoint":                         cfg.Issuer + AuthorizePath,
		"token_endpoint":                                 cfg.Issuer + TokenPath,
		"registration_endpoint":                          cfg.Issuer + RegisterPath,
		"jwks_uri":                                       cfg.Issuer + "/.well-known/idflow/jwks.json",
		"scopes_supported":                               nonNil(cfg.Scopes),
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"code_challenge_methods_supported":               []string{"S256"},
		"client_id_metadata_document_supported":          true,
		"authorization_response_iss_parameter_supported": true,
	}
	if s.metadata, err = json.Marshal(meta); err != nil {
		return nil, err
	}
	return s, nil
}

// Issuer is the authorization server's issuer identifier.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// ServeMetadata answers the RFC 8414 metadata.
func (s *Server) ServeMetadata(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Access-Control-Allow-Origin", "*") // public discovery data
	_, err := w.Write(s.metadata)
	return err
}

// CheckGrant refuses a verified access token of idflow's whose grant no
// longer stands (auth.OwnTokens.Check).
func (s *Server) CheckGrant(ctx context.Context, p idflow.Principal) error {
	if p.ClientID == "" {
		return idflow.NotFound("grant")
	}
	return s.store.OAuthGrantActive(ctx, p, p.ClientID)
}

// ListGrants answers p's active grants.
func (s *Server) ListGrants(ctx context.Context, p idflow.Principal) ([]idflow.OAuthGrant, error) {
	return s.store.ListOAuthGrants(ctx, p)
}

// RevokeGrant revokes p's grant id: its refresh tokens die at once, and
// its access tokens are refused on their next request.
func (s *Server) RevokeGrant(ctx context.Context, p idflow.Principal, id string) error {
	err := s.store.RevokeOAuthGrant(ctx, p, id)
	s.audit(ctx, p, "oauth.revoke", "oauth_grant/"+id, err)
	return err
}

// RevokeUserGrants revokes every grant of userID: the deactivation of a
// user (the caller has checked that p may deactivate them).
func (s *Server) RevokeUserGrants(ctx context.Context, p idflow.Principal, userID string) (int, error) {
	n, err := s.store.RevokeOAuthGrantsOf(ctx, p, userID)
	s.audit(ctx, p, "oauth.revoke_user", "user/"+userID, err)
	return n, err
}

// accessClaims are the claims of an access token (RFC 9068).
type accessClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      string   `json:"aud"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	Nbf      int64    `json:"nbf"`
	Jti      string   `json:"jti"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	Idtyp    string   `json:"idtyp"`
	Tid      string   `json:"tid,omitempty"`
	Email    string   `json:"email,omitempty"`
	Name     string   `json:"name,omitempty"`
	Roles    []string `json:"roles"`
	Groups   []string `json:"groups"`
}

// accessToken signs an access token for the grant's user and client.
func (s *Server) accessToken(g idflow.OAuthGrant, clientID string, scopes []string) (string, error) {
	now := s.cfg.Now()
	id := g.Identity
	return s.tokens.Sign(accessClaims{
		Iss: s.cfg.Issuer, Sub: g.UserID, Aud: s.cfg.Resource,
		Exp: now.Add(s.cfg.AccessTokenTTL).Unix(), Iat: now.Unix(), Nbf: now.Unix(), Jti: idflow.NewID(""),
		ClientID: clientID, Scope: strings.Join(scopes, " "), Idtyp: string(idflow.KindUser),
		Tid: id.TenantID, Email: id.Email, Name: id.Name, Roles: nonNil(id.Roles), Groups: nonNil(id.Groups),
	})
}

// secret returns a new random secret (256 bits) with prefix, and its hash
// as stored.
func secret(prefix string) (string, string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := prefix + base64.RawURLEncoding.EncodeToString(b)
	return v, hashSecret(v)
}

func hashSecret(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// grantedScopes resolves a request's scope parameter: none asks for every
// supported scope; OIDC-only scopes are dropped; any other unknown one is
// refused.
func grantedScopes(requested string, supported []string) ([]string, error) {
	if len(requested) > 1024 {
		return nil, oauthErr("invalid_scope", "the scope parameter is too long")
	}
	fields := strings.Fields(requested)
	if len(fields) == 0 {
		return nonNil(slices.Clone(supported)), nil
	}
	out := []string{}
	for _, sc := range fields {
		switch {
		case slices.Contains(supported, sc):
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		case slices.Contains(ignoredScopes, sc):
		default:
			return nil, oauthErr("invalid_scope", "the scope "+quote(sc)+" is not offered here")
		}
	}
	return out, nil
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// quote shows a value from a request in a message, bounded.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(`"`+s+`"`, "?")
}
