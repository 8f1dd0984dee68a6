package devidp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// DownstreamPath is where the demo downstream API is mounted in dev mode.
const DownstreamPath = "/dev/downstream"

// DownstreamConfig turns the dev issuer into a demo downstream provider:
// idflow's dev provider "dev" connects users to it with the confidential
// client DownstreamClientID, and calls DownstreamPath/whoami with the
// access token it got — a token for the downstream API (aud Audience), not
// for idflow.
type DownstreamConfig struct {
	Secret      string // client secret of DownstreamClientID; empty turns it all off
	RedirectURI string // <public url>/api/v1/connections/dev/callback, the only one accepted
	Audience    string // aud of its access tokens: <public url>/dev/downstream
}

func (i *Issuer) downstreamOn() bool {
	d := i.cfg.Downstream
	return d.Secret != "" && d.RedirectURI != "" && d.Audience != ""
}

// checkDownstreamAuthorize accepts exactly the registered redirect URI.
func (i *Issuer) checkDownstreamAuthorize(q url.Values) (*url.URL, error) {
	if !i.downstreamOn() {
		return nil, errf("unknown client_id")
	}
	if q.Get("redirect_uri") != i.cfg.Downstream.RedirectURI {
		return nil, errf("redirect_uri is not registered for " + DownstreamClientID)
	}
	if q.Get("resource") != "" {
		return nil, errf("resource is not supported for " + DownstreamClientID)
	}
	return url.Parse(i.cfg.Downstream.RedirectURI)
}

// tokenClient authenticates the client of a token request (its form
// already parsed): the confidential downstream client by its secret (HTTP
// Basic or client_secret_post), or the public client by its id alone.
func (i *Issuer) tokenClient(r *http.Request) (string, bool) {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	switch {
	case id == PublicClientID && secret == "" && !basic:
		return id, true
	case id == DownstreamClientID && i.downstreamOn() && constantEqual(secret, i.cfg.Downstream.Secret):
		return id, true
	}
	return "", false
}

// downstreamClaims makes claims those of a token for the downstream API.
func (i *Issuer) downstreamClaims(claims map[string]any) {
	claims["aud"] = i.cfg.Downstream.Audience
	claims["client_id"] = DownstreamClientID
	claims["azp"] = DownstreamClientID
}

// downstreamWhoami answers who the bearer token belongs to. It accepts only
// tokens the dev issuer gave DownstreamClientID for the downstream audience:
// an idflow API token (a user's inbound token) is refused, which is how the
// demo shows that idflow never passes the inbound token through.
func (i *Issuer) downstreamWhoami(w http.ResponseWriter, r *http.Request) {
	refuse := func(desc string) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dev-downstream", error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", desc)
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		refuse("bearer token required")
		return
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		refuse("bad token")
		return
	}
	payload, err := jws.Verify(&i.key.PublicKey)
	if err != nil {
		refuse("bad token")
		return
	}
	var c struct {
		Sub      string          `json:"sub"`
		Exp      float64         `json:"exp"`
		Aud      json.RawMessage `json:"aud"`
		ClientID string          `json:"client_id"`
		Scope    string          `json:"scope"`
	}
	if json.Unmarshal(payload, &c) != nil || float64(i.cfg.Now().Unix()) >= c.Exp {
		refuse("expired")
		return
	}
	var auds []string
	if json.Unmarshal(c.Aud, &auds) != nil {
		var one string
		_ = json.Unmarshal(c.Aud, &one)
		auds = []string{one}
	}
	if !slices.Contains(auds, i.cfg.Downstream.Audience) || c.ClientID != DownstreamClientID {
		refuse("this token is not for the downstream API")
		return
	}
	for _, u := range Users {
		if u.ID == c.Sub {
			writeJSON(w, http.StatusOK, map[string]any{"sub": u.ID, "login": u.Login, "name": u.Name, "email": u.Email,
				"tenant_id": u.Tenant, "client_id": c.ClientID, "scope": c.Scope, "audience": i.cfg.Downstream.Audience})
			return
		}
	}
	refuse("unknown subject")
}
