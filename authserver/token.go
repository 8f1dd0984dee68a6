package authserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/idflow/idflow"
)

// tokenParams are the parameters of a token request; each may appear once.
var tokenParams = []string{"grant_type", "code", "redirect_uri", "client_id", "code_verifier", "refresh_token",
	"resource", "scope", "client_secret"}

// tokenOut is a successful token response (RFC 6749 §5.1).
type tokenOut struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// Token serves POST /oauth/token: authorization_code (PKCE S256) and
// refresh_token (rotated; a reused one revokes its grant), for public
// clients only.
func (s *Server) Token(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*") // no ambient credential: the code or refresh token is the credential
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return oauthErr("invalid_request", "send the token request as application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return mbe
		}
		return oauthErr("invalid_request", "the body is not a form")
	}
	form := r.PostForm
	for _, name := range tokenParams {
		if len(form[name]) > 1 {
			return oauthErr("invalid_request", "the parameter "+name+" appears more than once")
		}
	}
	if _, _, ok := r.BasicAuth(); ok || form.Get("client_secret") != "" {
		return oauthErr("invalid_client", "clients here are public: authenticate with PKCE, not a secret")
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return oauthErr("invalid_request", "client_id is required")
	}
	if res := form.Get("resource"); res != "" && res != s.cfg.Resource {
		return oauthErr("invalid_target", "the only resource here is "+s.cfg.Resource)
	}
	var out tokenOut
	var err error
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		out, err = s.redeemCode(r, form, clientID)
	case "refresh_token":
		out, err = s.refresh(r, form, clientID)
	case "":
		err = oauthErr("invalid_request", "grant_type is required")
	default:
		err = oauthErr("unsupported_grant_type", "only authorization_code and refresh_token are supported")
	}
	if err != nil {
		s.log.InfoContext(r.Context(), "oauth token refused", "client_id", clientID, "err", err)
		return err
	}
	return writeJSON(w, out)
}

// redeemCode exchanges a code for tokens. The code is spent by the first
// attempt, whether it succeeds or not: a code intercepted and tried with
// a wrong verifier is gone for its thief and its owner alike.
func (s *Server) redeemCode(r *http.Request, form url.Values, clientID string) (tokenOut, error) {
	code, verifier, redirectURI := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	if code == "" || len(code) > 256 {
		return tokenOut{}, oauthErr("invalid_request", "code is required")
	}
	if !validVerifier(verifier) {
		return tokenOut{}, oauthErr("invalid_request", "code_verifier is required: 43 to 128 characters of [A-Za-z0-9-._~] (PKCE)")
	}
	if _, err := s.resolveClient(r.Context(), clientID); err != nil {
		return tokenOut{}, err
	}
	refresh, refreshHash := secret("idf_rt_")
	c, g, err := s.store.RedeemOAuthCode(r.Context(), hashSecret(code), idflow.OAuthRefresh{Hash: refreshHash,
		Resource: s.cfg.Resource, ExpiresAt: s.cfg.Now().Add(s.cfg.RefreshTokenTTL)}, func(c idflow.OAuthCode) error {
		switch {
		case c.ClientID != clientID:
			return oauthErr("invalid_grant", "the code was issued to another client")
		case c.RedirectURI != redirectURI:
			return oauthErr("invalid_grant", "redirect_uri differs from the authorization request's")
		case !s256Matches(verifier, c.CodeChallenge):
			return oauthErr("invalid_grant", "code_verifier does not match the code_challenge")
		}
		return nil
	})
	if idflow.ErrorCode(err) == idflow.ENOTFOUND {
		return tokenOut{}, oauthErr("invalid_grant", "the code is unknown, used, expired or its grant revoked")
	}
	if err != nil {
		return tokenOut{}, err
	}
	return s.issue(g, c.ClientID, c.Scopes, refresh)
}

// refresh rotates a refresh token.
func (s *Server) refresh(r *http.Request, form url.Values, clientID string) (tokenOut, error) {
	old := form.Get("refresh_token")
	if old == "" || len(old) > 256 {
		return tokenOut{}, oauthErr("invalid_request", "refresh_token is required")
	}
	next, nextHash := secret("idf_rt_")
	var scopes []string
	prev, g, err := s.store.RotateOAuthRefresh(r.Context(), hashSecret(old), idflow.OAuthRefresh{Hash: nextHash,
		Resource: s.cfg.Resource, ExpiresAt: s.cfg.Now().Add(s.cfg.RefreshTokenTTL)}, func(t idflow.OAuthRefresh) error {
		if t.ClientID != clientID {
			return oauthErr("invalid_grant", "the refresh token was issued to another client")
		}
		// A narrower scope may be asked for (RFC 6749 §6), never a wider one.
		scopes = t.Scopes
		if req := form.Get("scope"); req != "" {
			asked, err := grantedScopes(req, t.Scopes)
			if err != nil {
				return err
			}
			scopes = asked
		}
		return nil
	})
	switch {
	case errors.Is(err, idflow.ErrRefreshReused):
		s.log.WarnContext(r.Context(), "oauth refresh token reused: grant revoked", "user_id", prev.UserID, "client_id", clientID, "grant_id", prev.GrantID)
		return tokenOut{}, oauthErr("invalid_grant", "the refresh token was already used; its grant is revoked — sign in again")
	case idflow.ErrorCode(err) == idflow.ENOTFOUND:
		return tokenOut{}, oauthErr("invalid_grant", "the refresh token is unknown, expired or its grant revoked")
	case err != nil:
		return tokenOut{}, err
	}
	// The successor keeps the grant's scopes; a narrowed request narrows
	// this response's access token only.
	return s.issue(g, prev.ClientID, scopes, next)
}

// issue answers an access token for the grant, and refresh.
func (s *Server) issue(g idflow.OAuthGrant, clientID string, scopes []string, refresh string) (tokenOut, error) {
	at, err := s.accessToken(g, clientID, scopes)
	if err != nil {
		return tokenOut{}, err
	}
	return tokenOut{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(s.cfg.AccessTokenTTL.Seconds()),
		RefreshToken: refresh, Scope: strings.Join(scopes, " ")}, nil
}

// validVerifier accepts a PKCE code verifier (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~') {
			return false
		}
	}
	return true
}

// s256Matches reports whether challenge is BASE64URL(SHA256(verifier)).
func s256Matches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}
