// Package auth is the only place an idflow.Principal is built: from a
// verified bearer token, a browser session, a trusted proxy's headers, or a
// background job's snapshot. Everything else receives the Principal.
package auth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// SessionCookie is the browser session cookie (docs/SECURITY.md, cookies).
const SessionCookie = "idflow_session"

// CSRFHeader must echo the session's CSRF token on cookie-authenticated writes.
const CSRFHeader = "X-CSRF-Token"

// Sessions resolves a browser session cookie. Implemented by the browser
// login (package web); nil when browser login is off.
type Sessions interface {
	// Lookup returns the session's Principal and its CSRF token.
	Lookup(ctx context.Context, sessionID string) (p idflow.Principal, csrf string, err error)
}

// Causes of refusals that the caller audits as attacks.
var (
	ErrSpoofedHeader = errors.New("spoofed identity header")
	ErrCSRF          = errors.New("csrf token missing or wrong")
	ErrCrossSite     = errors.New("state-changing request from another site")
)

// Config wires the credential sources together.
type Config struct {
	Bearer   *Verifier // nil when no OpenID issuer is configured
	Sessions Sessions  // nil when browser login is off
	Proxy    *ProxyConfig
	// Origins are the web origins whose pages may make state-changing
	// requests with an ambient credential (the session cookie, a trusted
	// proxy's identity headers): the public URL's and the CORS origins.
	// URLs are reduced to their origin; with none, every Origin is foreign.
	Origins []string
	// SessionCookie is the session cookie's name for the public URL
	// (CookiesFor(publicURL).Session); empty means the bare SessionCookie.
	SessionCookie string
	// Own verifies idflow's own access tokens (the authorization server of
	// /mcp, package authserver); nil when it is off.
	Own *OwnTokens
	// PersonalTokens resolves idf_pat_ bearer tokens; nil refuses them.
	PersonalTokens PersonalTokens
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// Revocations refuses disabled users, Directory adds their directory
	// groups (lifecycle.go: admit); nil: nobody is disabled, no directory.
	Revocations Revocations
	Directory   Directory
}

// OwnTokens are the access tokens idflow issues itself. A token whose
// (unverified) iss is Issuer goes to Verifier alone, and only where the
// route's accepted audiences include one of Verifier's: /mcp, never the
// API. Its signing key is not the assertion key, so an X-Idflow-Assertion
// never passes for one.
type OwnTokens struct {
	Issuer   string
	Verifier *Verifier
	// Check refuses a verified token whose grant no longer stands (revoked
	// by the user, by reuse of a refresh token, by deactivation).
	Check func(ctx context.Context, p idflow.Principal) error
}

// Authenticator turns a request's credentials into a Principal.
type Authenticator struct {
	bearer   *Verifier
	sessions Sessions
	proxy    *proxyAuth
	origins  map[string]bool
	cookie   string // the session cookie's name
	own      *OwnTokens
	pats     PersonalTokens
	now      func() time.Time

	revocations Revocations
	directory   Directory
}

// New returns an Authenticator. With no source configured it refuses every
// request: there is no fallback identity.
func New(cfg Config) *Authenticator {
	a := &Authenticator{bearer: cfg.Bearer, sessions: cfg.Sessions, origins: map[string]bool{}, cookie: cfg.SessionCookie,
		own: cfg.Own, pats: cfg.PersonalTokens, now: cfg.Now, revocations: cfg.Revocations, directory: cfg.Directory}
	if a.now == nil {
		a.now = time.Now
	}
	for _, o := range cfg.Origins {
		if u, err := url.Parse(strings.TrimSpace(o)); err == nil {
			if origin, ok := normalizeOrigin(u.Scheme + "://" + u.Host); ok {
				a.origins[origin] = true
			}
		}
	}
	if a.cookie == "" {
		a.cookie = SessionCookie
	}
	if cfg.Proxy != nil {
		a.proxy = newProxyAuth(*cfg.Proxy)
	} else {
		// Even without trusted proxies, identity headers are recognised so
		// that a client sending them is refused and audited.
		a.proxy = newProxyAuth(ProxyConfig{})
	}
	return a
}

// Audiences restricts which token audiences a route accepts; nil accepts
// the verifier's configured audiences.
type Audiences []string

// Authenticate returns the Principal of r. Sources, in order: a spoofed
// identity header is refused outright; then Authorization: Bearer; then the
// session cookie; then a trusted proxy's headers. A request with none is
// refused (EUNAUTHORIZED). Every Principal it answers went through admit.
func (a *Authenticator) Authenticate(r *http.Request, accept Audiences) (idflow.Principal, error) {
	p, err := a.authenticate(r, accept)
	if err != nil {
		return idflow.Principal{}, err
	}
	return a.admit(r.Context(), p)
}

func (a *Authenticator) authenticate(r *http.Request, accept Audiences) (idflow.Principal, error) {
	if a.proxy.claimed(r) && !a.proxy.trustedPeer(r) {
		return idflow.Principal{}, idflow.WrapError(idflow.EUNAUTHORIZED, "identity headers are only accepted from a trusted proxy", ErrSpoofedHeader)
	}
	if hs := r.Header.Values("Authorization"); len(hs) > 1 {
		return idflow.Principal{}, idflow.WrapError(idflow.EUNAUTHORIZED, "the Authorization header appears more than once", errRepeatedHeader)
	} else if len(hs) == 1 && hs[0] != "" {
		raw, ok := bearerToken(hs[0])
		if !ok {
			return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "the Authorization header must be a Bearer token")
		}
		return a.verifyToken(r.Context(), raw, accept)
	}
	if c, err := r.Cookie(a.cookie); err == nil && a.sessions != nil {
		p, csrf, err := a.sessions.Lookup(r.Context(), c.Value)
		if err != nil {
			return idflow.Principal{}, err
		}
		if changesState(r) {
			if err := a.sameSite(r); err != nil {
				return idflow.Principal{}, err
			}
			if csrf == "" || r.Header.Get(CSRFHeader) != csrf {
				return idflow.Principal{}, idflow.WrapError(idflow.EFORBIDDEN, "a valid "+CSRFHeader+" header is required", ErrCSRF)
			}
		}
		return p, nil
	}
	if a.proxy.claimed(r) && len(a.proxy.trusted) > 0 {
		p, err := a.proxy.authenticate(r.Context(), r)
		if err != nil {
			return idflow.Principal{}, err
		}
		if changesState(r) {
			// The proxy authenticated a browser by its cookie, most
			// likely: the same ambient credential, the same rule.
			if err := a.sameSite(r); err != nil {
				return idflow.Principal{}, err
			}
		}
		return p, nil
	}
	return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "authentication required")
}

// AuthenticateToken authenticates r by a bearer token it carried somewhere
// other than the Authorization header (a WebSocket subprotocol, an allowed
// query parameter). Spoofed identity headers are refused first, as always.
func (a *Authenticator) AuthenticateToken(r *http.Request, raw string, accept Audiences) (idflow.Principal, error) {
	if a.proxy.claimed(r) && !a.proxy.trustedPeer(r) {
		return idflow.Principal{}, idflow.WrapError(idflow.EUNAUTHORIZED, "identity headers are only accepted from a trusted proxy", ErrSpoofedHeader)
	}
	return a.VerifyToken(r.Context(), raw, accept)
}

// VerifyToken verifies a bearer token obtained some other way (a WebSocket
// subprotocol, an MCP request); its Principal went through admit. A
// personal access token (idf_pat_…) is looked up, never parsed as a JWT;
// audiences do not apply to it (it is idflow's own, for idflow alone).
func (a *Authenticator) VerifyToken(ctx context.Context, raw string, accept Audiences) (idflow.Principal, error) {
	p, err := a.verifyToken(ctx, raw, accept)
	if err != nil {
		return idflow.Principal{}, err
	}
	return a.admit(ctx, p)
}

func (a *Authenticator) verifyToken(ctx context.Context, raw string, accept Audiences) (idflow.Principal, error) {
	if IsPersonalToken(raw) {
		return a.verifyPersonalToken(ctx, raw)
	}
	if a.own != nil && a.own.Issuer != "" && unverifiedIssuer(raw) == a.own.Issuer {
		return a.verifyOwn(ctx, raw, accept)
	}
	if a.bearer == nil {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "bearer tokens are not accepted here")
	}
	tok, err := a.bearer.Verify(ctx, raw)
	if err != nil {
		return idflow.Principal{}, err
	}
	if accept != nil && !slices.ContainsFunc(tok.Audiences, func(s string) bool { return slices.Contains(accept, s) }) {
		return idflow.Principal{}, unauthorized(errors.New("audience not accepted on this route"))
	}
	return tok.Principal, nil
}

// verifyOwn verifies one of idflow's own access tokens for a route that
// accepts the audiences accept.
func (a *Authenticator) verifyOwn(ctx context.Context, raw string, accept Audiences) (idflow.Principal, error) {
	v := a.own.Verifier
	if !slices.ContainsFunc(accept, func(s string) bool { return slices.Contains(v.cfg.Audiences, s) }) {
		return idflow.Principal{}, unauthorized(errors.New("idflow's own access tokens are accepted on /mcp only"))
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return idflow.Principal{}, err
	}
	if !slices.ContainsFunc(tok.Audiences, func(s string) bool { return slices.Contains(accept, s) }) {
		return idflow.Principal{}, unauthorized(errors.New("audience not accepted on this route"))
	}
	if a.own.Check != nil {
		if err := a.own.Check(ctx, tok.Principal); err != nil {
			if idflow.ErrorCode(err) == idflow.ENOTFOUND {
				return idflow.Principal{}, idflow.WrapError(idflow.EUNAUTHORIZED, "the grant of this token was revoked", err)
			}
			return idflow.Principal{}, err
		}
	}
	return tok.Principal, nil
}

// HasBearer reports whether bearer tokens are configured.
func (a *Authenticator) HasBearer() bool { return a.bearer != nil }

// authorizationBearer is the bearer token of r's only Authorization header.
func authorizationBearer(r *http.Request) (string, bool) {
	hs := r.Header["Authorization"]
	if len(hs) != 1 {
		return "", false
	}
	return bearerToken(hs[0])
}

func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameSite refuses a state-changing request that a browser says came from
// another site: an Origin (any of them, "null" included) that is neither
// the public URL's nor a CORS origin, or Sec-Fetch-Site: cross-site. A
// client that sends neither (curl, a server) is not a browser page, and
// the cookie path still needs its CSRF token. On a forward-auth question
// these are the headers of the request asked about: nginx, Traefik and
// Caddy copy the client's headers onto it.
func (a *Authenticator) sameSite(r *http.Request) error {
	for _, o := range r.Header.Values("Origin") {
		if n, ok := normalizeOrigin(strings.TrimSpace(o)); !ok || !a.origins[n] {
			return idflow.WrapError(idflow.EFORBIDDEN, "state-changing requests with a session cookie or proxy identity headers must come from this site's pages: the Origin is another site's", ErrCrossSite)
		}
	}
	for _, v := range r.Header.Values("Sec-Fetch-Site") {
		if strings.EqualFold(strings.TrimSpace(v), "cross-site") {
			return idflow.WrapError(idflow.EFORBIDDEN, "state-changing requests with a session cookie or proxy identity headers must come from this site's pages: Sec-Fetch-Site is cross-site", ErrCrossSite)
		}
	}
	return nil
}

// normalizeOrigin returns the serialized origin of s (RFC 6454: scheme,
// lower-case host, port unless the scheme's default), or false when s is
// not exactly an http(s) origin — "null" included.
func normalizeOrigin(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if host == "" {
		return "", false
	}
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		return u.Scheme + "://" + net.JoinHostPort(host, port), true
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return u.Scheme + "://" + host, true
}

// originalMethodHeaders carry, on a forward-auth request (nginx
// auth_request, Traefik ForwardAuth, Caddy forward_auth), the method of the
// request the proxy is asking about: the question itself is always a GET.
var originalMethodHeaders = []string{"X-Original-Method", "X-Forwarded-Method"}

// changesState reports whether a cookie-authenticated request needs the
// CSRF token: its own method is not safe, or it asks on behalf of a request
// whose method is not (forward-auth). A client that sets these headers
// itself can only make the check stricter.
func changesState(r *http.Request) bool {
	if !safeMethod(r.Method) {
		return true
	}
	for _, h := range originalMethodHeaders {
		for _, m := range r.Header.Values(h) {
			if m = strings.ToUpper(strings.TrimSpace(m)); m != "" && !safeMethod(m) {
				return true
			}
		}
	}
	return false
}
