package devidp

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Handler serves the issuer under Path.
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path+"/.well-known/openid-configuration", i.discovery)
	mux.HandleFunc("GET "+Path+"/jwks.json", i.jwks)
	mux.HandleFunc("GET "+Path+"/authorize", i.authorizePage)
	mux.HandleFunc("POST "+Path+"/authorize", i.authorize)
	mux.HandleFunc("POST "+Path+"/token", i.token)
	mux.HandleFunc("GET "+Path+"/userinfo", i.userinfo)
	mux.HandleFunc("POST "+Path+"/revoke", i.revoke)
	mux.HandleFunc("GET "+Path+"/logout", i.logout)
	if i.downstreamOn() {
		mux.HandleFunc("GET "+DownstreamPath+"/whoami", i.downstreamWhoami)
	}
	return mux
}

func (i *Issuer) discovery(w http.ResponseWriter, r *http.Request) {
	iss := i.cfg.Issuer
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"userinfo_endpoint":                     iss + "/userinfo",
		"jwks_uri":                              iss + "/jwks.json",
		"revocation_endpoint":                   iss + "/revoke",
		"end_session_endpoint":                  iss + "/logout",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access", "idflow"},
		"token_endpoint_auth_methods_supported": []string{"none", "client_secret_basic", "client_secret_post"},
	})
}

func (i *Issuer) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{i.PublicJWK()}})
}

var pickTmpl = template.Must(template.New("pick").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>idflow dev sign-in</title>
<style>body{font:16px system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1d2330}
h1{font-size:1.4rem}p.note{background:#fff4d6;padding:.6rem .8rem;border-radius:6px}
ul{list-style:none;padding:0}li{margin:.5rem 0}
button{width:100%;text-align:left;padding:.8rem 1rem;font:inherit;border:1px solid #c8cfdc;border-radius:8px;background:#fff;cursor:pointer}
button:hover,button:focus{border-color:#3056d3;outline:2px solid #3056d3}
small{color:#566}</style></head>
<body><main><h1>Sign in to idflow (dev issuer)</h1>
<p class="note">This is the built-in development issuer. It exists only in <code>--dev</code> mode on loopback; pick a user.</p>
<form method="post" action="{{.Action}}">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<ul>{{range .Users}}<li><button type="submit" name="login" value="{{.Login}}" id="login-{{.Login}}">
<strong>{{.Login}}</strong> — {{.Name}}<br><small>tenant {{.Tenant}}{{range .Roles}} · role {{.}}{{end}}</small></button></li>
{{end}}</ul></form></main></body></html>`))

// authorizeParams are carried from the page to the POST unchanged.
var authorizeParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "resource", "dev_ttl"}

func (i *Issuer) authorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, err := i.checkAuthorize(q); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	params := map[string]string{}
	for _, k := range authorizeParams {
		if v := q.Get(k); v != "" {
			params[k] = v
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pickTmpl.Execute(w, map[string]any{"Action": Path + "/authorize", "Params": params, "Users": Users})
}

type authorizeRequest struct {
	redirect *url.URL
}

func (i *Issuer) checkAuthorize(q url.Values) (authorizeRequest, error) {
	var u *url.URL
	switch q.Get("client_id") {
	case PublicClientID:
		var err error
		u, err = url.Parse(q.Get("redirect_uri"))
		if err != nil || !allowedRedirect(u, i.cfg.Issuer) {
			return authorizeRequest{}, errf("redirect_uri must be a loopback http URL or this server's")
		}
	case DownstreamClientID:
		var err error
		if u, err = i.checkDownstreamAuthorize(q); err != nil {
			return authorizeRequest{}, err
		}
	default:
		return authorizeRequest{}, errf("unknown client_id")
	}
	if q.Get("response_type") != "code" {
		return authorizeRequest{}, errf("response_type must be code")
	}
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) < 43 {
		return authorizeRequest{}, errf("PKCE with S256 is required")
	}
	if res := q.Get("resource"); res != "" && res != i.cfg.Audience && res != i.cfg.ExtraAudience {
		return authorizeRequest{}, errf("unknown resource")
	}
	return authorizeRequest{redirect: u}, nil
}

func (i *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return
	}
	f := r.PostForm
	req, err := i.checkAuthorize(f)
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	user, ok := FindUser(f.Get("login"))
	if !ok {
		oauthError(w, http.StatusBadRequest, "access_denied", "unknown user")
		return
	}
	ttl := time.Hour
	if s := f.Get("dev_ttl"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 86400 {
			oauthError(w, http.StatusBadRequest, "invalid_request", "dev_ttl must be 1..86400 seconds")
			return
		}
		ttl = time.Duration(n) * time.Second
	}
	code := randomToken()
	i.mu.Lock()
	i.codes[code] = authCode{
		grant:       grant{user: user, clientID: f.Get("client_id"), scope: f.Get("scope"), resource: f.Get("resource"), ttl: ttl},
		redirectURI: f.Get("redirect_uri"), challenge: f.Get("code_challenge"), nonce: f.Get("nonce"),
		expires: i.cfg.Now().Add(time.Minute),
	}
	i.mu.Unlock()
	target := *req.redirect
	q := target.Query()
	q.Set("code", code)
	if s := f.Get("state"); s != "" {
		q.Set("state", s)
	}
	q.Set("iss", i.cfg.Issuer) // RFC 9207
	target.RawQuery = q.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return
	}
	f := r.PostForm
	switch f.Get("grant_type") {
	case "authorization_code":
		i.mu.Lock()
		c, ok := i.codes[f.Get("code")]
		delete(i.codes, f.Get("code")) // single use, whatever happens next
		i.mu.Unlock()
		if !ok || i.cfg.Now().After(c.expires) {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or expired code")
			return
		}
		if cid, ok := i.tokenClient(r); !ok || cid != c.clientID || f.Get("redirect_uri") != c.redirectURI {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "client or redirect_uri mismatch")
			return
		}
		if !constantEqual(pkceS256(f.Get("code_verifier")), c.challenge) {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
			return
		}
		i.issue(w, c.grant, c.nonce, true)
	case "refresh_token":
		rt := f.Get("refresh_token")
		i.mu.Lock()
		g, ok := i.refresh[rt]
		delete(i.refresh, rt) // rotation: every refresh token is used once
		i.mu.Unlock()
		if cid, cok := i.tokenClient(r); !ok || !cok || cid != g.clientID {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown refresh token")
			return
		}
		i.issue(w, g, "", true)
	case "client_credentials":
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = f.Get("client_id"), f.Get("client_secret")
		}
		if id != AppClientID || i.cfg.AppSecret == "" || !constantEqual(secret, i.cfg.AppSecret) {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
			return
		}
		now := i.cfg.Now()
		aud := i.cfg.Audience
		if res := f.Get("resource"); res == i.cfg.ExtraAudience && res != "" {
			aud = res
		}
		at, err := i.sign(map[string]any{
			"iss": i.cfg.Issuer, "sub": AppClientID, "client_id": AppClientID, "azp": AppClientID,
			"aud": aud, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"idtyp": "app", "roles": []string{AppClientRole}, "tid": "t-one", "jti": randomToken(),
		})
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", "signing failed")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600})
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type not supported")
	}
}

// AccessClaims are the claims of a dev user's access token.
func (i *Issuer) AccessClaims(u User, aud, scope string, now time.Time, ttl time.Duration) map[string]any {
	if scope == "" {
		scope = "openid profile email idflow"
	}
	return map[string]any{
		"iss": i.cfg.Issuer, "sub": u.ID, "aud": aud, "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(), "tid": u.Tenant, "name": u.Name, "email": u.Email,
		"preferred_username": u.Email, "roles": u.Roles, "groups": u.Groups, "scope": scope,
		"idtyp": "user", "client_id": PublicClientID, "azp": PublicClientID, "jti": randomToken(),
	}
}

func (i *Issuer) issue(w http.ResponseWriter, g grant, nonce string, withRefresh bool) {
	now := i.cfg.Now()
	aud := i.cfg.Audience
	if g.resource != "" {
		aud = g.resource
	}
	claims := i.AccessClaims(g.user, aud, g.scope, now, g.ttl)
	if g.clientID == DownstreamClientID {
		i.downstreamClaims(claims) // a token for the demo downstream API, not for idflow
	}
	at, err := i.sign(claims)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(g.ttl.Seconds()), "scope": g.scope}
	if strings.Contains(" "+g.scope+" ", " openid ") {
		idc := map[string]any{"iss": i.cfg.Issuer, "sub": g.user.ID, "aud": g.clientID, "iat": now.Unix(),
			"exp": now.Add(g.ttl).Unix(), "name": g.user.Name, "email": g.user.Email, "tid": g.user.Tenant}
		if nonce != "" {
			idc["nonce"] = nonce
		}
		idt, err := i.sign(idc)
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", "signing failed")
			return
		}
		resp["id_token"] = idt
	}
	if withRefresh {
		rt := randomToken()
		i.mu.Lock()
		i.refresh[rt] = g
		i.mu.Unlock()
		resp["refresh_token"] = rt
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

func (i *Issuer) sign(claims map[string]any) (string, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := i.signer.Sign(b)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// SignToken signs a dev user's access token directly, with no HTTP round
// trip: for tests and benchmarks of other packages, which cannot reach an
// export_test.go of this one.
func (i *Issuer) SignToken(login string, ttl time.Duration) (string, error) {
	u, ok := FindUser(login)
	if !ok {
		return "", errf("unknown dev user")
	}
	return i.sign(i.AccessClaims(u, i.cfg.Audience, "", i.cfg.Now(), ttl))
}

func (i *Issuer) userinfo(w http.ResponseWriter, r *http.Request) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", "bearer token required")
		return
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_token", "bad token")
		return
	}
	payload, err := jws.Verify(&i.key.PublicKey)
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_token", "bad token")
		return
	}
	var c struct {
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil || float64(i.cfg.Now().Unix()) > c.Exp {
		oauthError(w, http.StatusUnauthorized, "invalid_token", "expired")
		return
	}
	for _, u := range Users {
		if u.ID == c.Sub {
			writeJSON(w, http.StatusOK, map[string]any{"sub": u.ID, "name": u.Name, "email": u.Email, "tid": u.Tenant})
			return
		}
	}
	oauthError(w, http.StatusUnauthorized, "invalid_token", "unknown subject")
}

func (i *Issuer) revoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return
	}
	i.mu.Lock()
	delete(i.refresh, r.PostForm.Get("token"))
	i.mu.Unlock()
	w.WriteHeader(http.StatusOK) // RFC 7009: unknown tokens are not an error
}

func (i *Issuer) logout(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("post_logout_redirect_uri")
	if u, err := url.Parse(target); err == nil && target != "" && allowedRedirect(u, i.cfg.Issuer) {
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("Signed out of the idflow dev issuer.\n"))
}

// allowedRedirect accepts loopback http URLs (RFC 8252) and this server's own.
func allowedRedirect(u *url.URL, issuer string) bool {
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	if u.User != nil || u.Fragment != "" {
		return false
	}
	if iu, err := url.Parse(issuer); err == nil && u.Host == iu.Host && u.Scheme == iu.Scheme {
		return true
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return u.Scheme == "http"
	}
	return false
}

type devError string

func (e devError) Error() string { return string(e) }

func errf(s string) error { return devError(s) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
