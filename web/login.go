package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
)

// Sealer seals small secrets at rest (the vault keyring implements it).
type Sealer interface {
	Seal(userID, purpose string, plaintext []byte) (keyID string, ciphertext []byte, err error)
	Open(userID, purpose, keyID string, ciphertext []byte) ([]byte, error)
}

// pendingOwner stands for the not-yet-known user in the associated data of
// a pending login's sealed state.
const pendingOwner = "(sign-in in progress)"

// Config configures the browser login.
type Config struct {
	PublicURL    string
	ClientID     string
	ClientSecret string   // empty for a public client (PKCE only)
	Scopes       []string // openid profile email offline_access, plus the API's scope
	SessionTTL   time.Duration
}

// Login is the backend-for-frontend: it runs the authorization-code flow
// with PKCE, state and nonce, keeps the tokens server-side, refreshes them,
// and resolves the session cookie into a Principal (auth.Sessions).
type Login struct {
	cfg      Config
	disc     auth.Discovery
	oauth    oauth2.Config
	idTokens *auth.IDTokenVerifier
	access   *auth.Verifier
	store    idflow.BrowserSessionStore
	sealer   Sealer
	client   *http.Client
	log      *slog.Logger
	cookies  auth.Cookies // names and Secure, from the public URL
	now      func() time.Time
	refresh  singleflight.Group
}

// NewLogin returns the browser login for the issuer described by disc.
// access verifies the access tokens the session holds, exactly like bearer
// tokens; the ID token of each sign-in is checked on the same path, with
// the same keys, algorithms and claims rules (access.IDTokens).
func NewLogin(cfg Config, disc auth.Discovery, access *auth.Verifier,
	store idflow.BrowserSessionStore, sealer Sealer, log *slog.Logger) (*Login, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("web: a client id is required for the browser login")
	}
	if access == nil {
		return nil, errors.New("web: the browser login needs the bearer verifier")
	}
	idTokens, err := access.IDTokens(disc.Issuer, cfg.ClientID)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := url.Parse(cfg.PublicURL); err != nil {
		return nil, fmt.Errorf("web: public url: %w", err)
	}
	l := &Login{
		cfg: cfg, disc: disc, access: access, idTokens: idTokens, store: store, sealer: sealer, log: log,
		client:  &http.Client{Timeout: 15 * time.Second},
		cookies: auth.CookiesFor(cfg.PublicURL),
		now:     time.Now,
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Scopes: cfg.Scopes,
			RedirectURL: cfg.PublicURL + "/auth/callback",
			Endpoint:    oauth2.Endpoint{AuthURL: disc.AuthorizationEndpoint, TokenURL: disc.TokenEndpoint, AuthStyle: authStyle(cfg.ClientSecret)},
		},
	}
	return l, nil
}

// authStyle sends a public client's id in the form and a confidential
// client's credentials as HTTP Basic (client_secret_basic), never guessing:
// auto-detection retries with the same code, which a strict issuer has
// already spent.
func authStyle(secret string) oauth2.AuthStyle {
	if secret == "" {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// Cookies are the names of the cookies this login sets; the Authenticator
// must read the session cookie by the same name (auth.Config.SessionCookie).
func (l *Login) Cookies() auth.Cookies { return l.cookies }

// cookie is one of idflow's cookies: HttpOnly, SameSite=Lax, Path=/ and no
// Domain (as a __Host- name requires), Secure unless the public URL is
// plain-http loopback. maxAge < 0 deletes it.
func (l *Login) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: l.cookies.Secure, SameSite: http.SameSiteLaxMode}
}

// Account names the user whose session a sign-in created or a sign-out
// ended, for the audit trail.
type Account struct {
	UserID   string
	TenantID string
}

// pending is the sealed content of the login cookie.
type pending struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
}

// tokens is what a session keeps sealed.
type tokens struct {
	Access  string    `json:"a"`
	Refresh string    `json:"r,omitempty"`
	IDToken string    `json:"i,omitempty"`
	Expiry  time.Time `json:"x"`
	Tenant  string    `json:"t,omitempty"` // for the sign-out's audit event
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// HandleLogin starts the authorization-code flow.
func (l *Login) HandleLogin(w http.ResponseWriter, r *http.Request) error {
	p := pending{State: random(24), Nonce: random(24), Verifier: oauth2.GenerateVerifier(),
		ReturnTo: SafeReturn(r.URL.Query().Get("return_to")), Expires: l.now().Add(10 * time.Minute).Unix()}
	b, _ := json.Marshal(p)
	kid, ct, err := l.sealer.Seal(pendingOwner, "login", b)
	if err != nil {
		return fmt.Errorf("seal login state: %w", err)
	}
	http.SetCookie(w, l.cookie(l.cookies.Login, kid+"."+base64.RawURLEncoding.EncodeToString(ct), 600))
	target := l.oauth.AuthCodeURL(p.State, oauth2.SetAuthURLParam("nonce", p.Nonce), oauth2.S256ChallengeOption(p.Verifier))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

func (l *Login) readPending(r *http.Request) (pending, error) {
	var p pending
	c, err := r.Cookie(l.cookies.Login)
	if err != nil {
		return p, idflow.Errorf(idflow.EINVALID, "no sign-in in progress; start again at /auth/login")
	}
	kid, enc, ok := strings.Cut(c.Value, ".")
	ct, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || err != nil {
		return p, idflow.Errorf(idflow.EINVALID, "bad sign-in state; start again at /auth/login")
	}
	b, err := l.sealer.Open(pendingOwner, "login", kid, ct)
	if err != nil || json.Unmarshal(b, &p) != nil || l.now().Unix() > p.Expires {
		return p, idflow.Errorf(idflow.EINVALID, "sign-in state expired or invalid; start again at /auth/login")
	}
	return p, nil
}

// HandleCallback finishes the flow: state, PKCE and nonce checked, tokens
// verified, a server-side session created. It answers whom it signed in.
func (l *Login) HandleCallback(w http.ResponseWriter, r *http.Request) (Account, error) {
	var none Account
	ctx := r.Context()
	p, err := l.readPending(r)
	if err != nil {
		return none, err
	}
	http.SetCookie(w, l.cookie(l.cookies.Login, "", -1))
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return none, idflow.Errorf(idflow.EUNAUTHORIZED, "the identity provider refused the sign-in (%s)", e)
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.State)) != 1 {
		return none, idflow.Errorf(idflow.EUNAUTHORIZED, "sign-in state mismatch")
	}
	if iss := q.Get("iss"); iss != "" && iss != l.disc.Issuer { // RFC 9207 mix-up defence
		return none, idflow.Errorf(idflow.EUNAUTHORIZED, "sign-in answered by the wrong issuer")
	}
	tok, err := l.oauth.Exchange(context.WithValue(ctx, oauth2.HTTPClient, l.client), q.Get("code"), oauth2.VerifierOption(p.Verifier))
	if err != nil {
		return none, idflow.WrapError(idflow.EUNAUTHORIZED, "the code could not be exchanged", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return none, idflow.Errorf(idflow.EUNAUTHORIZED, "the identity provider sent no ID token")
	}
	// The nonce ties the ID token to the sign-in this browser started.
	if _, err := l.idTokens.Verify(ctx, rawID, p.Nonce); err != nil {
		return none, idflow.WrapError(idflow.EUNAUTHORIZED, "invalid ID token", err)
	}
	verified, err := l.access.Verify(ctx, tok.AccessToken)
	if err != nil {
		return none, err
	}
	principal := verified.AsSession()
	if _, err := principal.Owner(); err != nil {
		return none, err
	}
	id := random(32)
	sess := idflow.BrowserSession{IDHash: hashID(id), UserID: principal.UserID, CSRF: random(24),
		CreatedAt: l.now().UTC(), UpdatedAt: l.now().UTC(), ExpiresAt: l.now().Add(l.cfg.SessionTTL).UTC()}
	if err := l.seal(&sess, tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, IDToken: rawID, Expiry: tok.Expiry,
		Tenant: principal.TenantID}); err != nil {
		return none, err
	}
	if err := l.store.CreateBrowserSession(ctx, sess); err != nil {
		return none, err
	}
	http.SetCookie(w, l.cookie(l.cookies.Session, id, int(l.cfg.SessionTTL.Seconds())))
	l.log.InfoContext(ctx, "browser sign-in", "user_id", principal.UserID)
	// ReturnTo passed SafeReturn when the flow started (and is sealed since).
	http.Redirect(w, r, p.ReturnTo, http.StatusFound)
	return Account{UserID: principal.UserID, TenantID: principal.TenantID}, nil
}

func (l *Login) seal(s *idflow.BrowserSession, t tokens) error {
	b, _ := json.Marshal(t)
	kid, ct, err := l.sealer.Seal(s.UserID, "browser-session", b)
	if err != nil {
		return fmt.Errorf("seal session: %w", err)
	}
	s.KeyID, s.Sealed = kid, ct
	return nil
}

// HandleLogout ends the session (the CSRF token is required, as on every
// cookie write) and signs out at the identity provider when it offers
// RP-initiated logout. It answers whose session it ended (zero if none).
func (l *Login) HandleLogout(w http.ResponseWriter, r *http.Request) (Account, error) {
	var ended Account
	ctx := r.Context()
	target := "/"
	if c, err := r.Cookie(l.cookies.Session); err == nil {
		sess, err := l.store.GetBrowserSession(ctx, hashID(c.Value))
		if err == nil {
			if err := r.ParseForm(); err != nil {
				return ended, idflow.Errorf(idflow.EINVALID, "bad form")
			}
			got := r.Header.Get(auth.CSRFHeader)
			if got == "" {
				got = r.PostForm.Get("csrf_token")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
				return ended, idflow.WrapError(idflow.EFORBIDDEN, "a valid CSRF token is required to sign out", auth.ErrCSRF)
			}
			if err := l.store.DeleteBrowserSession(ctx, sess.IDHash); err != nil {
				return ended, err
			}
			t, _ := l.open(sess)
			ended = Account{UserID: sess.UserID, TenantID: t.Tenant}
			if l.disc.EndSessionEndpoint != "" {
				u, _ := url.Parse(l.disc.EndSessionEndpoint)
				q := u.Query()
				q.Set("client_id", l.cfg.ClientID)
				q.Set("post_logout_redirect_uri", l.cfg.PublicURL+"/")
				if t.IDToken != "" {
					q.Set("id_token_hint", t.IDToken)
				}
				u.RawQuery = q.Encode()
				target = u.String()
			}
		}
	}
	http.SetCookie(w, l.cookie(l.cookies.Session, "", -1))
	http.Redirect(w, r, target, http.StatusSeeOther)
	return ended, nil
}

func (l *Login) open(s idflow.BrowserSession) (tokens, error) {
	var t tokens
	b, err := l.sealer.Open(s.UserID, "browser-session", s.KeyID, s.Sealed)
	if err != nil {
		return t, err
	}
	return t, json.Unmarshal(b, &t)
}

// Lookup implements auth.Sessions: the session's stored access token is
// verified like any bearer token, and refreshed (once, for all concurrent
// requests of the session) when less than a minute remains.
func (l *Login) Lookup(ctx context.Context, id string) (idflow.Principal, string, error) {
	var none idflow.Principal
	expired := idflow.Errorf(idflow.EUNAUTHORIZED, "session expired — sign in again")
	if id == "" || len(id) > 128 {
		return none, "", expired
	}
	sess, err := l.store.GetBrowserSession(ctx, hashID(id))
	if err != nil {
		return none, "", expired
	}
	t, err := l.open(sess)
	if err != nil {
		l.log.WarnContext(ctx, "browser session unreadable", "err", err)
		return none, "", expired
	}
	if t.Expiry.IsZero() || l.now().Add(time.Minute).After(t.Expiry) {
		v, err, _ := l.refresh.Do(sess.IDHash, func() (any, error) { return l.refreshSession(ctx, sess, t) })
		if err != nil {
			l.log.InfoContext(ctx, "browser session refresh failed", "user_id", sess.UserID, "err", err)
			return none, "", expired
		}
		t = v.(tokens)
	}
	verified, err := l.access.Verify(ctx, t.Access)
	if err != nil || verified.Principal.UserID != sess.UserID {
		return none, "", expired
	}
	return verified.AsSession(), sess.CSRF, nil
}

func (l *Login) refreshSession(ctx context.Context, sess idflow.BrowserSession, t tokens) (tokens, error) {
	if t.Refresh == "" {
		return t, errors.New("no refresh token")
	}
	src := l.oauth.TokenSource(context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, l.client),
		&oauth2.Token{RefreshToken: t.Refresh, Expiry: l.now().Add(-time.Second)})
	nt, err := src.Token()
	if err != nil {
		return t, err
	}
	out := tokens{Access: nt.AccessToken, Refresh: nt.RefreshToken, IDToken: t.IDToken, Expiry: nt.Expiry, Tenant: t.Tenant}
	if out.Refresh == "" {
		out.Refresh = t.Refresh
	}
	if id, ok := nt.Extra("id_token").(string); ok && id != "" {
		out.IDToken = id
	}
	sess.UpdatedAt = l.now().UTC()
	if err := l.seal(&sess, out); err != nil {
		return t, err
	}
	return out, l.store.UpdateBrowserSession(context.WithoutCancel(ctx), sess)
}
