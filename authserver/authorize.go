package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// codeTTL is how long an authorization code may wait to be redeemed.
const codeTTL = time.Minute

// authRequest is a checked authorization request.
type authRequest struct {
	ClientID      string
	RedirectURI   string
	State         string
	CodeChallenge string
	Resource      string
	Scopes        []string
}

// authParams are the parameters of an authorization request idflow reads;
// each may appear once at most (RFC 6749 §3.1).
var authParams = []string{"response_type", "client_id", "redirect_uri", "state", "scope",
	"code_challenge", "code_challenge_method", "resource"}

// redirectError is an error the client learns through its redirect URI
// (RFC 6749 §4.1.2.1): the client and the redirect URI are known good.
type redirectError struct{ err error }

func (e *redirectError) Error() string { return e.err.Error() }
func (e *redirectError) Unwrap() error { return e.err }

// parseAuthorize reads an authorization request. It answers the client id
// and redirect URI first; every error after those two are read (and
// matched by the caller against the client) is a *redirectError.
func parseAuthorize(q url.Values, resource string, supported []string) (authRequest, error) {
	var req authRequest
	for _, name := range authParams {
		if len(q[name]) > 1 {
			return req, oauthErr("invalid_request", "the parameter "+name+" appears more than once")
		}
	}
	req.ClientID, req.RedirectURI = q.Get("client_id"), q.Get("redirect_uri")
	if req.ClientID == "" {
		return req, oauthErr("invalid_request", "client_id is required")
	}
	if req.RedirectURI == "" {
		return req, oauthErr("invalid_request", "redirect_uri is required")
	}
	redirect := func(code, msg string) (authRequest, error) {
		return req, &redirectError{oauthErr(code, msg)}
	}
	req.State = q.Get("state")
	if len(req.State) > maxStateLen {
		req.State = ""
		return redirect("invalid_request", "state is too long")
	}
	if rt := q.Get("response_type"); rt != "code" {
		return redirect("unsupported_response_type", "only response_type=code is supported")
	}
	// PKCE with S256 is required; a missing method means plain (RFC 7636
	// §4.3), which is refused like an explicit one: no downgrade.
	if m := q.Get("code_challenge_method"); m != "S256" {
		return redirect("invalid_request", "PKCE with code_challenge_method=S256 is required")
	}
	req.CodeChallenge = q.Get("code_challenge")
	if !validChallenge(req.CodeChallenge) {
		return redirect("invalid_request", "code_challenge must be the base64url SHA-256 of a code verifier (43 characters)")
	}
	// RFC 8707: the one resource is /mcp; a client that names none means it.
	req.Resource = q.Get("resource")
	if req.Resource == "" {
		req.Resource = resource
	}
	if req.Resource != resource {
		return redirect("invalid_target", "the only resource here is "+resource)
	}
	scopes, err := grantedScopes(q.Get("scope"), supported)
	if err != nil {
		return req, &redirectError{err}
	}
	req.Scopes = scopes
	return req, nil
}

// validChallenge accepts an S256 code challenge: 43 base64url characters.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for _, r := range c {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// authorizeRequest checks a request against its client. An error that is
// not a *redirectError must be shown to the user, never sent to the
// redirect URI: the client or the URI is not known good.
func (s *Server) authorizeRequest(ctx context.Context, q url.Values) (authRequest, client, error) {
	req, perr := parseAuthorize(q, s.cfg.Resource, s.cfg.Scopes)
	var re *redirectError
	if perr != nil && !errors.As(perr, &re) {
		return req, client{}, perr
	}
	c, err := s.resolveClient(ctx, req.ClientID)
	if err != nil {
		return req, c, err
	}
	if !redirectMatches(c.RedirectURIs, req.RedirectURI) {
		return req, c, oauthErr("invalid_request", "redirect_uri is not one this client registered (it must match exactly; a loopback one may differ in the port only)")
	}
	return req, c, perr
}

// errorRedirect is where the browser goes for a redirectable error.
func (s *Server) errorRedirect(req authRequest, err error) string {
	code, desc := "server_error", "the request failed"
	if e, ok := asOAuth(err); ok {
		code, desc = e.Code, e.Description
	}
	return s.redirect(req, url.Values{"error": {code}, "error_description": {desc}})
}

// redirect is req's redirect URI with the response parameters, state and
// iss (RFC 9207) added to its query.
func (s *Server) redirect(req authRequest, params url.Values) string {
	u, err := url.Parse(req.RedirectURI)
	if err != nil { // checked when registered; cannot happen
		return req.RedirectURI
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	return u.String()
}

// browserOnly refuses a consent that does not come from a signed-in
// browser: a bearer token of another client cannot mint itself a grant.
func browserOnly(p idflow.Principal) error {
	switch p.AuthMethod {
	case idflow.AuthSession, idflow.AuthProxyHeader, idflow.AuthProxyAssertion:
		return nil
	}
	return idflow.Errorf(idflow.EFORBIDDEN, "authorization is given in a signed-in browser, not with a bearer token")
}

// Authorize serves GET /oauth/authorize for p, the signed-in browser's
// user (httpapi sends a signed-out browser to sign in first, and back):
// the consent page, or the client's redirect URI with an error. csrf is
// the session's CSRF token, for the page's answer.
func (s *Server) Authorize(w http.ResponseWriter, r *http.Request, p idflow.Principal, csrf string) error {
	if err := browserOnly(p); err != nil {
		return err
	}
	req, c, err := s.authorizeRequest(r.Context(), r.URL.Query())
	var re *redirectError
	if errors.As(err, &re) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, s.errorRedirect(req, err), http.StatusFound)
		return nil
	}
	if err != nil {
		return err
	}
	return s.renderConsent(w, r, p, req, c, csrf)
}

// consentOut is the answer to the consent form: where the page sends the
// browser next.
type consentOut struct {
	RedirectTo string `json:"redirect_to"`
}

// Consent serves POST /oauth/authorize: the user's answer on the consent
// page (the session's CSRF token checked by the authenticator), with the
// request's parameters in the form. It answers where to send the browser:
// the client's redirect URI with a code, or with access_denied.
func (s *Server) Consent(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	if err := browserOnly(p); err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return idflow.WrapError(idflow.EINVALID, "bad form", err)
	}
	form := r.PostForm
	decision := form.Get("decision")
	req, c, err := s.authorizeRequest(r.Context(), form)
	var re *redirectError
	switch {
	case errors.As(err, &re):
		return writeJSON(w, consentOut{RedirectTo: s.errorRedirect(req, err)})
	case err != nil:
		return err
	}
	if decision != "allow" {
		s.audit(r.Context(), p, "oauth.consent", "oauth_client/"+c.ID, idflow.Errorf(idflow.EFORBIDDEN, "denied"))
		return writeJSON(w, consentOut{RedirectTo: s.redirect(req, url.Values{"error": {"access_denied"},
			"error_description": {"the user did not allow access"}})})
	}
	code, codeHash := secret("idf_ac_")
	g, err := s.store.GrantOAuth(r.Context(), p, idflow.OAuthGrant{ClientID: c.ID, ClientName: c.Name,
		RedirectURI: req.RedirectURI, Scopes: req.Scopes, Identity: p.Snapshot()},
		idflow.OAuthCode{Hash: codeHash, ClientID: c.ID, RedirectURI: req.RedirectURI, CodeChallenge: req.CodeChallenge,
			Resource: req.Resource, Scopes: req.Scopes, ExpiresAt: s.cfg.Now().Add(codeTTL)})
	s.audit(r.Context(), p, "oauth.consent", "oauth_client/"+c.ID, err)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "oauth grant", "user_id", p.UserID, "client_id", c.ID, "grant_id", g.ID)
	return writeJSON(w, consentOut{RedirectTo: s.redirect(req, url.Values{"code": {code}})})
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(v)
}

// consentPage is the page that asks the user. The client's name is its
// own claim; what vouches for it is the host of its metadata document, or
// nothing for a registration — the page says which.
var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow {{.Name}} to use idflow as you?</title>
<link rel="stylesheet" href="/static/app.css">
<script type="module" src="/static/consent.js"></script>
</head>
<body>
<main id="main" class="consent">
<h1>Allow <span id="client-name">{{.Name}}</span> to use idflow as you?</h1>
<p>You are signed in as <strong id="user">{{.User}}</strong>.</p>
<dl>
<dt>Client</dt><dd id="client-id">{{.ClientID}}</dd>
<dt>Vouched for by</dt><dd id="vouched">{{if .Document}}the web site {{.DocumentHost}} (the client's metadata document){{else}}nobody: the client registered itself, and named itself{{end}}</dd>
<dt>Sends you back to</dt><dd id="redirect-host">{{.RedirectHost}}</dd>
<dt>Access</dt><dd id="scopes">idflow's MCP tools at {{.Resource}}{{if .Scopes}} (scopes: {{.Scopes}}){{end}}, as you, until you revoke it</dd>
</dl>
<form id="consent" method="post" action="/oauth/authorize" data-csrf="{{.CSRF}}">
{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<button type="submit" name="decision" value="allow" id="allow">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
<p id="consent-error" role="alert"></p>
</main>
</body>
</html>
`))

type field struct{ Name, Value string }

func (s *Server) renderConsent(w http.ResponseWriter, r *http.Request, p idflow.Principal, req authRequest, c client, csrf string) error {
	name := c.Name
	if name == "" {
		name = "an unnamed client"
	}
	user := p.Email
	if user == "" {
		user = p.Name
	}
	if user == "" {
		user = p.UserID
	}
	docHost := ""
	if u, err := url.Parse(c.ID); err == nil && c.Document {
		docHost = u.Host
	}
	q := r.URL.Query()
	var fields []field
	for _, n := range authParams {
		if v := q.Get(n); v != "" {
			fields = append(fields, field{n, v})
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY") // clickjacking: the consent page is never framed
	return consentPage.Execute(w, map[string]any{
		"Name": name, "User": user, "ClientID": c.ID, "Document": c.Document, "DocumentHost": docHost,
		"RedirectHost": redirectHost(req.RedirectURI), "Resource": s.cfg.Resource, "Scopes": strings.Join(req.Scopes, " "),
		"CSRF": csrf, "Fields": fields,
	})
}
