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

// oauthClient speaks to providers' token and revocation endpoints.
type oauthClient struct {
	reg  *Registry
	http *http.Client
	now  func() time.Time
	log  *slog.Logger
}

// Refresh implements vault.Refresher.
func (o *oauthClient) Refresh(ctx context.Context, provider, refreshToken string) (vault.Token, error) {
	p, ok := o.reg.Get(provider)
	if !ok {
		return vault.Token{}, fmt.Errorf("provider %q is no longer configured", provider)
	}
	return o.token(ctx, p, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
}

// redeemCode exchanges an authorization code (with its PKCE verifier).
func (o *oauthClient) redeemCode(ctx context.Context, p *Provider, code, verifier, redirectURI string) (vault.Token, error) {
	return o.token(ctx, p, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirectURI}, "code_verifier": {verifier}})
}

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

// token posts form to p's token endpoint, authenticated as p's client.
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
	if out.AccessToken == "" {
		return vault.Token{}, fmt.Errorf("token endpoint of %q: no access_token in the answer", p.Name)
	}
	if out.TokenType != "" && !strings.EqualFold(out.TokenType, "bearer") {
		return vault.Token{}, fmt.Errorf("token endpoint of %q: token_type %q is not Bearer", p.Name, truncate(out.TokenType, 40))
	}
	t := vault.Token{AccessToken: out.AccessToken, RefreshToken: out.RefreshToken, TokenType: "Bearer",
		Scopes: strings.Fields(out.Scope)}
	if secs, ok := parseExpiresIn(out.ExpiresIn); ok {
		t.Expiry = o.now().Add(time.Duration(secs) * time.Second).UTC()
	}
	return t, nil
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
// send one).
func parseExpiresIn(raw json.RawMessage) (int64, bool) {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" || s == "null" {
		return 0, false
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n > 10*365*24*3600 {
		return 0, false
	}
	return int64(n), true
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
