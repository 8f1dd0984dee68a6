package connections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/vault"
)

// Grant types and token types.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// maxTokenResponse bounds a token endpoint's answer.
const maxTokenResponse = 1 << 20

// OAuthError is an error answer of a token endpoint (RFC 6749 §5.2). Its
// description comes from the provider and never contains a token.
type OAuthError struct {
	Status      int
	Code        string
	Description string
}

func (e *OAuthError) Error() string {
	s := fmt.Sprintf("token endpoint answered %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Unwrap makes an invalid_grant answer match vault.ErrInvalidGrant.
func (e *OAuthError) Unwrap() error {
	if e.Code == "invalid_grant" {
		return vault.ErrInvalidGrant
	}
	return nil
}

// oauthClient speaks to providers' token and revocation endpoints. Codes
// are redeemed and tokens refreshed by golang.org/x/oauth2; the token
// exchanges (RFC 8693, Entra on-behalf-of) and revocation (RFC 7009),
// which x/oauth2 does not offer, are requests of its own.
type oauthClient struct {
	reg  *Registry
	http *http.Client
	now  func() time.Time
	log  *slog.Logger
}

// config is p's client for x/oauth2.
func (o *oauthClient) config(p *Provider, redirectURI string) *oauth2.Config {
	c := &oauth2.Config{ClientID: p.ClientID, RedirectURL: redirectURI, Scopes: p.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: p.AuthorizeURL, TokenURL: p.TokenURL}}
	// The client authentication is the configured one, never guessed:
	// x/oauth2's auto-detection answers a refusal by trying the other
	// style, sending the code a second time, which a strict issuer has
	// already spent (and may then revoke what it issued for it).
	switch p.authMethod() {
	case AuthSecretBasic:
		c.Endpoint.AuthStyle, c.ClientSecret = oauth2.AuthStyleInHeader, p.secret
	case AuthSecretPost:
		c.Endpoint.AuthStyle, c.ClientSecret = oauth2.AuthStyleInParams, p.secret
	default: // none: client_id in the form, no secret
		c.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	return c
}

// clientContext carries o's HTTP client (timeouts, the tests' transports)
// to x/oauth2.
func (o *oauthClient) clientContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, o.http)
}

// authCodeURL is where the user grants p access: code flow, PKCE (S256)
// over verifier, state, p's scopes and extra parameters.
func (o *oauthClient) authCodeURL(p *Provider, redirectURI, state, verifier string) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	for k, v := range p.AuthorizeParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return o.config(p, redirectURI).AuthCodeURL(state, opts...)
}

// Refresh implements vault.Refresher.
func (o *oauthClient) Refresh(ctx context.Context, provider, refreshToken string) (vault.Token, error) {
	p, ok := o.reg.Get(provider)
	if !ok {
		return vault.Token{}, fmt.Errorf("provider %q is no longer configured", provider)
	}
	// A token without an access token is invalid, so x/oauth2 refreshes.
	t, err := o.config(p, "").TokenSource(o.clientContext(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	return o.fromOAuth2(p, t, err)
}

// redeemCode exchanges an authorization code (with its PKCE verifier).
func (o *oauthClient) redeemCode(ctx context.Context, p *Provider, code, verifier, redirectURI string) (vault.Token, error) {
	t, err := o.config(p, redirectURI).Exchange(o.clientContext(ctx), code, oauth2.VerifierOption(verifier))
	return o.fromOAuth2(p, t, err)
}

// fromOAuth2 turns x/oauth2's answer into a vault token, with the checks
// and the clock of every token answer (tokenAnswer).
func (o *oauthClient) fromOAuth2(p *Provider, t *oauth2.Token, err error) (vault.Token, error) {
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// Only the standard fields: the raw body is never kept.
			oe := &OAuthError{Code: re.ErrorCode, Description: truncate(re.ErrorDescription, 300)}
			if re.Response != nil {
				oe.Status = re.Response.StatusCode
			}
			return vault.Token{}, oe
		}
		return vault.Token{}, fmt.Errorf("token endpoint of %q: %w", p.Name, redactURLError(err))
	}
	expiresIn := t.ExpiresIn
	if n, ok := t.Extra("expires_in").(int64); ok && expiresIn == 0 { // a form-encoded answer
		expiresIn = n
	}
	scope, _ := t.Extra("scope").(string)
	return o.tokenAnswer(p, t.AccessToken, t.TokenType, t.RefreshToken, scope, expiresIn)
}

// tokenAnswer checks a token endpoint's successful answer: an access
// token, of type Bearer, expiring (if it says) within ten years.
func (o *oauthClient) tokenAnswer(p *Provider, access, tokenType, refresh, scope string, expiresIn int64) (vault.Token, error) {
	if access == "" {
		return vault.Token{}, fmt.Errorf("token endpoint of %q: no access_token in the answer", p.Name)
	}
	if tokenType != "" && !strings.EqualFold(tokenType, "bearer") {
		return vault.Token{}, fmt.Errorf("token endpoint of %q: token_type %q is not Bearer", p.Name, truncate(tokenType, 40))
	}
	t := vault.Token{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", Scopes: strings.Fields(scope)}
	if expiresIn > 0 && expiresIn <= maxExpiresIn {
		t.Expiry = o.now().Add(time.Duration(expiresIn) * time.Second).UTC()
	}
	return t, nil
}

// maxExpiresIn bounds a believable expires_in (seconds): ten years.
const maxExpiresIn = 10 * 365 * 24 * 3600

// exchange trades the caller's inbound token for one for p. The inbound
// token goes to p's token endpoint only, as the subject (or assertion).
func (o *oauthClient) exchange(ctx context.Context, p *Provider, inbound string) (vault.Token, error) {
	form := url.Values{}
	switch p.Exchange {
	case ExchangeRFC8693:
		stt := p.SubjectTokenType
		if stt == "" {
			stt = tokenTypeAccess
		}
		form.Set("grant_type", grantTokenExchange)
		form.Set("subject_token", inbound)
		form.Set("subject_token_type", stt)
		form.Set("requested_token_type", tokenTypeAccess)
		if p.Audience != "" {
			form.Set("audience", p.Audience)
		}
		if p.Resource != "" {
			form.Set("resource", p.Resource)
		}
	case ExchangeEntraOBO:
		form.Set("grant_type", grantJWTBearer)
		form.Set("assertion", inbound)
		form.Set("requested_token_use", "on_behalf_of")
	default:
		return vault.Token{}, fmt.Errorf("provider %q does not exchange tokens", p.Name)
	}
	if len(p.Scopes) > 0 {
		form.Set("scope", strings.Join(p.Scopes, " "))
	}
	return o.token(ctx, p, form)
}

// token posts a token exchange's form to p's token endpoint, authenticated
// as p's client.
func (o *oauthClient) token(ctx context.Context, p *Provider, form url.Values) (vault.Token, error) {
	req, err := o.request(ctx, p, p.TokenURL, form)
	if err != nil {
		return vault.Token{}, err
	}
	resp, err := o.http.Do(req)
	if err != nil {
		return vault.Token{}, fmt.Errorf("token endpoint of %q: %w", p.Name, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return vault.Token{}, fmt.Errorf("token endpoint of %q: %w", p.Name, err)
	}
	var out struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Scope        string          `json:"scope"`
		Error        string          `json:"error"`
		Description  string          `json:"error_description"`
	}
	jerr := json.Unmarshal(body, &out)
	if resp.StatusCode != http.StatusOK || out.Error != "" {
		return vault.Token{}, &OAuthError{Status: resp.StatusCode, Code: out.Error, Description: truncate(out.Description, 300)}
	}
	if jerr != nil {
		return vault.Token{}, fmt.Errorf("token endpoint of %q: the answer is not JSON: %w", p.Name, jerr)
	}
	return o.tokenAnswer(p, out.AccessToken, out.TokenType, out.RefreshToken, out.Scope, parseExpiresIn(out.ExpiresIn))
}

// revoke tells p that token is no longer needed (RFC 7009); best effort.
func (o *oauthClient) revoke(ctx context.Context, p *Provider, token, hint string) {
	if p.RevocationURL == "" || token == "" {
		return
	}
	req, err := o.request(ctx, p, p.RevocationURL, url.Values{"token": {token}, "token_type_hint": {hint}})
	if err != nil {
		o.log.WarnContext(ctx, "revocation request", "provider", p.Name, "err", err)
		return
	}
	resp, err := o.http.Do(req)
	if err != nil {
		o.log.WarnContext(ctx, "revocation failed", "provider", p.Name, "err", redactURLError(err))
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		o.log.WarnContext(ctx, "revocation refused", "provider", p.Name, "status", resp.StatusCode)
	}
}

// request builds a form POST to endpoint with p's client authentication.
func (o *oauthClient) request(ctx context.Context, p *Provider, endpoint string, form url.Values) (*http.Request, error) {
	switch p.authMethod() {
	case AuthSecretPost:
		form.Set("client_id", p.ClientID)
		form.Set("client_secret", p.secret)
	case AuthNone:
		form.Set("client_id", p.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", p.Name, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if p.authMethod() == AuthSecretBasic {
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(p.ClientID), url.QueryEscape(p.secret))
	}
	return req, nil
}

// parseExpiresIn accepts a JSON number or a numeric string (some providers
// send one); 0 when there is none.
func parseExpiresIn(raw json.RawMessage) int64 {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n > maxExpiresIn {
		return 0
	}
	return int64(n)
}

// redactURLError drops the URL from a transport error: a form body never
// shows in it, but a misconfigured URL might carry credentials.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// userFacing turns an error of a token endpoint into one the caller may see.
func userFacing(err error, code, what string) error {
	var oe *OAuthError
	if errors.As(err, &oe) && oe.Code != "" {
		return idflow.WrapError(code, fmt.Sprintf("%s: the provider answered %s", what, oe.Code), err)
	}
	return idflow.WrapError(idflow.EUNAVAILABLE, what+": the provider could not be reached", err)
}
