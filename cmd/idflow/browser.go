package main

import (
	"log/slog"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/lifecycle"
	"github.com/idflow/idflow/web"
)

// loginParts describes the issuer the browser login signs in with.
type loginParts struct {
	clientID, secret string
	disc             auth.Discovery
	scopes           []string
}

// browserLogin builds the browser login (BFF) when an issuer and a client
// are configured: the dev issuer in --dev, IDFLOW_OIDC_CLIENT_ID otherwise.
// Its sessions are kept in the store, their tokens sealed with the vault key.
func browserLogin(cfg *config, lp *loginParts, access *auth.Verifier, store idflow.Store, log *slog.Logger) (*web.Login, error) {
	if lp == nil || access == nil {
		return nil, nil
	}
	keys, err := vaultKeyring(cfg, "IDFLOW_OIDC_CLIENT_ID is set: browser sessions", log)
	if err != nil {
		return nil, err
	}
	return web.NewLogin(web.Config{PublicURL: cfg.PublicURL, ClientID: lp.clientID, ClientSecret: lp.secret, Scopes: lp.scopes},
		lp.disc, access, store, keys, log.With("component", "browser-login"))
}

// authenticator reads every credential source: bearer tokens, trusted
// proxies' headers and, with a browser login, the session cookie it sets,
// named once for the public URL. Cookies and WebSockets are accepted from
// the public URL's origin and IDFLOW_CORS_ORIGINS.
func authenticator(cfg *config, bearer *auth.Verifier, proxy *auth.ProxyConfig, l *web.Login, own *auth.OwnTokens, pats auth.PersonalTokens, life *lifecycle.Set) *auth.Authenticator {
	c := auth.Config{Bearer: bearer, Proxy: proxy, Origins: append([]string{cfg.PublicURL}, splitComma(cfg.CORSOrigins)...), Own: own,
		PersonalTokens: pats, Revocations: life, Directory: life}
	if l != nil { // a nil *web.Login must not become a non-nil auth.Sessions
		c.Sessions, c.SessionCookie = l, l.Cookies().Session
	}
	return auth.New(c)
}
