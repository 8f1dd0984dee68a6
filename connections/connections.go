// Package connections lets users connect idflow to downstream services and
// calls those services on their behalf: the connect flow (authorization
// code + PKCE, the state bound to the user who started it), the providers
// file, token exchange (RFC 8693, Entra on-behalf-of), and the
// idflow.Downstream that sends a request with the user's own credential —
// from the vault, or exchanged from the user's inbound token — and never
// anything shared, never the inbound token itself.
package connections

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/vault"
)

// DefaultStateTTL is how long a started connect flow may take.
const DefaultStateTTL = 10 * time.Minute

// Auditor records an action (service.Service implements it).
type Auditor interface {
	Audit(ctx context.Context, p idflow.Principal, action, resource string, err error)
}

// Config configures a Manager.
type Config struct {
	// PublicURL is idflow's external base URL; callbacks are
	// <PublicURL>/api/v1/connections/{provider}/callback.
	PublicURL string
	Providers *Registry
	Store     idflow.ConnectionStore
	Keys      *vault.Keyring
	// HTTP calls token endpoints and downstream APIs (default: 30 s
	// timeout). Redirects are never followed, so a credential is never
	// replayed to a URL idflow did not choose.
	HTTP     *http.Client
	Audit    Auditor
	Log      *slog.Logger
	Now      func() time.Time
	StateTTL time.Duration
	// Vault tunes the vault (its Store, Keys, Refresher, Log, Now and Audit
	// are set by New).
	Vault vault.Config
}

// Manager is the connect flow and the idflow.Downstream.
type Manager struct {
	cfg   Config
	oauth *oauthClient
	vault *vault.Vault
}

var _ idflow.Downstream = (*Manager)(nil)

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Providers == nil {
		return nil, errors.New("connections: a store, a keyring and providers are required")
	}
	if cfg.PublicURL == "" {
		return nil, errors.New("connections: the public URL is required")
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StateTTL <= 0 {
		cfg.StateTTL = DefaultStateTTL
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if cfg.HTTP != nil {
		c := *cfg.HTTP
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTP = client
	m := &Manager{cfg: cfg, oauth: &oauthClient{reg: cfg.Providers, http: client, now: cfg.Now, log: cfg.Log}}
	vc := cfg.Vault
	vc.Store, vc.Keys, vc.Refresher, vc.Log, vc.Now = cfg.Store, cfg.Keys, m.oauth, cfg.Log, cfg.Now
	if cfg.Audit != nil {
		vc.Audit = cfg.Audit.Audit
	}
	v, err := vault.New(vc)
	if err != nil {
		return nil, err
	}
	m.vault = v
	return m, nil
}

// Vault is the manager's vault.
func (m *Manager) Vault() *vault.Vault { return m.vault }

// Providers is the provider registry.
func (m *Manager) Providers() *Registry { return m.cfg.Providers }

func (m *Manager) audit(ctx context.Context, p idflow.Principal, action, resource string, err error) {
	if m.cfg.Audit != nil {
		m.cfg.Audit.Audit(ctx, p, action, resource, err)
	}
}

// provider returns the named provider, or the one not-found answer.
func (m *Manager) provider(name string) (*Provider, error) {
	p, ok := m.cfg.Providers.Get(name)
	if !ok {
		return nil, idflow.NotFound("provider")
	}
	return p, nil
}

// CallbackURL is the redirect URI of provider's connect flow.
func (m *Manager) CallbackURL(provider string) string {
	return m.cfg.PublicURL + "/api/v1/connections/" + provider + "/callback"
}

// ListConnections answers p's connections; tokens never leave the vault.
func (m *Manager) ListConnections(ctx context.Context, p idflow.Principal) ([]idflow.Connection, error) {
	return m.cfg.Store.ListConnections(ctx, p)
}

// Connect starts p's connect flow to provider and returns the URL to send
// the user's browser to.
func (m *Manager) Connect(ctx context.Context, p idflow.Principal, provider string) (string, error) {
	authorizeURL, err := m.connect(ctx, p, provider)
	m.audit(ctx, p, "connection.connect_start", "connection/"+provider, err)
	return authorizeURL, err
}

func (m *Manager) connect(ctx context.Context, p idflow.Principal, name string) (string, error) {
	if _, err := p.Owner(); err != nil {
		return "", err
	}
	prov, err := m.provider(name)
	if err != nil {
		return "", err
	}
	if !prov.Connectable() {
		return "", idflow.Errorf(idflow.EINVALID, "provider %q needs no connection: it exchanges your sign-in token on each call", name)
	}
	state, verifier := randomString(), oauth2.GenerateVerifier()
	redirect := m.CallbackURL(name)
	if err := m.cfg.Store.SaveConnectState(ctx, p, idflow.ConnectState{State: state, Provider: name,
		CodeVerifier: verifier, RedirectURI: redirect, ExpiresAt: m.cfg.Now().Add(m.cfg.StateTTL)}); err != nil {
		return "", err
	}
	return m.oauth.authCodeURL(prov, redirect, state, verifier), nil
}

// Callback completes p's connect flow: the state must be one p started for
// this provider (else not found, audited), the code is redeemed with its
// PKCE verifier, and the tokens are sealed into the vault.
func (m *Manager) Callback(ctx context.Context, p idflow.Principal, provider string, q url.Values) (idflow.Connection, error) {
	c, err := m.callback(ctx, p, provider, q)
	m.audit(ctx, p, "connection.connect", "connection/"+provider, err)
	return c, err
}

func (m *Manager) callback(ctx context.Context, p idflow.Principal, name string, q url.Values) (idflow.Connection, error) {
	if _, err := p.Owner(); err != nil {
		return idflow.Connection{}, err
	}
	prov, err := m.provider(name)
	if err != nil {
		return idflow.Connection{}, err
	}
	state := q.Get("state")
	if state == "" {
		return idflow.Connection{}, idflow.Errorf(idflow.EINVALID, "state is required")
	}
	st, err := m.cfg.Store.TakeConnectState(ctx, p, state)
	if err != nil {
		return idflow.Connection{}, err
	}
	if st.Provider != name {
		return idflow.Connection{}, idflow.NotFound("connect state")
	}
	if e := q.Get("error"); e != "" {
		return idflow.Connection{}, idflow.Errorf(idflow.EFORBIDDEN, "the provider did not grant the connection: %s", truncate(e, 60))
	}
	code := q.Get("code")
	if code == "" {
		return idflow.Connection{}, idflow.Errorf(idflow.EINVALID, "code is required")
	}
	tok, err := m.oauth.redeemCode(ctx, prov, code, st.CodeVerifier, st.RedirectURI)
	if err != nil {
		return idflow.Connection{}, userFacing(err, idflow.EFORBIDDEN, "the authorization code was not accepted")
	}
	if len(tok.Scopes) == 0 {
		tok.Scopes = prov.Scopes
	}
	return m.vault.Put(ctx, p, name, tok)
}

// Disconnect revokes p's tokens for provider at the provider (best effort)
// and forgets them.
func (m *Manager) Disconnect(ctx context.Context, p idflow.Principal, provider string) error {
	err := m.vault.Remove(ctx, p, provider, func(ctx context.Context, t vault.Token) {
		prov, ok := m.cfg.Providers.Get(provider)
		if !ok {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if t.RefreshToken != "" {
			m.oauth.revoke(rctx, prov, t.RefreshToken, "refresh_token")
		}
		m.oauth.revoke(rctx, prov, t.AccessToken, "access_token")
	})
	m.audit(ctx, p, "connection.delete", "connection/"+provider, err)
	return err
}

// Do sends req to provider's API as p. req's URL must be relative: its
// path is resolved under the provider's api_base_url. The Authorization
// header is p's downstream token — from the vault, or exchanged from p's
// inbound token — and any Authorization or Cookie header on req is dropped.
func (m *Manager) Do(ctx context.Context, p idflow.Principal, provider string, req *http.Request) (*http.Response, error) {
	if _, err := p.Owner(); err != nil {
		return nil, err
	}
	if cp, ok := idflow.FromContext(ctx); ok && cp.UserID != p.UserID {
		return nil, idflow.Errorf(idflow.EFORBIDDEN, "a downstream call must be made as the request's own user")
	}
	prov, err := m.provider(provider)
	if err != nil {
		return nil, err
	}
	target, err := resolve(prov.api, req.URL)
	if err != nil {
		return nil, err
	}
	tok, err := m.token(ctx, p, prov)
	if err != nil {
		return nil, err
	}
	out := req.Clone(ctx)
	out.URL = target
	out.Host = ""
	out.RequestURI = ""
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
		out.Header.Del(h)
	}
	out.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := m.cfg.HTTP.Do(out)
	if err != nil {
		return nil, idflow.WrapError(idflow.EUNAVAILABLE, fmt.Sprintf("provider %q could not be reached", provider), redactURLError(err))
	}
	return resp, nil
}

// ErrNoInboundToken is the cause of Token's refusal for an exchange
// provider when the call carries no bearer token of its user.
var ErrNoInboundToken = errors.New("connections: no inbound token to exchange")

// Token returns p's own access token for provider, for a caller that sends
// it itself (the downstream MCP servers' transport) to a URL the operator
// configured: from the vault for a connected provider (an error wrapping
// vault.ErrNotConnected or vault.ErrNeedsConsent when p must connect
// first), or exchanged from p's inbound token in ctx for an exchange
// provider (ErrNoInboundToken when there is none). The refresh token never
// leaves the vault.
func (m *Manager) Token(ctx context.Context, p idflow.Principal, provider string) (vault.Token, error) {
	if _, err := p.Owner(); err != nil {
		return vault.Token{}, err
	}
	if cp, ok := idflow.FromContext(ctx); ok && cp.UserID != p.UserID {
		return vault.Token{}, idflow.Errorf(idflow.EFORBIDDEN, "a downstream call must be made as the request's own user")
	}
	prov, err := m.provider(provider)
	if err != nil {
		return vault.Token{}, err
	}
	return m.token(ctx, p, prov)
}

// token is p's access token for prov: from the vault, or exchanged.
func (m *Manager) token(ctx context.Context, p idflow.Principal, prov *Provider) (vault.Token, error) {
	if prov.Connectable() {
		return m.vault.Get(ctx, p, prov.Name)
	}
	inbound, ok := idflow.InboundToken(ctx, p)
	if !ok {
		return vault.Token{}, idflow.WrapError(idflow.EFORBIDDEN, fmt.Sprintf(
			"provider %q exchanges the caller's own bearer token, which this call does not have (background runs and browser sessions carry none)", prov.Name),
			ErrNoInboundToken)
	}
	tok, err := m.oauth.exchange(ctx, prov, inbound)
	if err != nil {
		return vault.Token{}, userFacing(err, idflow.EFORBIDDEN, fmt.Sprintf("the token exchange with %q was refused", prov.Name))
	}
	tok.RefreshToken = "" // an exchanged token is used once, never refreshed
	return tok, nil
}

// resolve places a relative request URL under base; it can never leave it.
func resolve(base *url.URL, rel *url.URL) (*url.URL, error) {
	if rel == nil || rel.Scheme != "" || rel.Host != "" || rel.User != nil || rel.Opaque != "" {
		return nil, idflow.Errorf(idflow.EINVALID, "a downstream request names a path under the provider's API, not a URL")
	}
	clean := path.Clean("/" + rel.Path)
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + clean
	if clean == "/" && !strings.HasSuffix(rel.Path, "/") {
		u.Path = strings.TrimSuffix(u.Path, "/")
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawPath = ""
	u.RawQuery = rel.RawQuery
	u.Fragment = ""
	return &u, nil
}

func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
