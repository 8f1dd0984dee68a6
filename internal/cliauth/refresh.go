package cliauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RefreshBefore: a stored access token with less left is refreshed first.
const RefreshBefore = 5 * time.Minute

// Fresh returns the credentials in s with an access token that has at
// least RefreshBefore left, refreshing (and storing the rotated refresh
// token) when needed. A refresh that fails while the stored token still
// has time left is no error: that token is returned, and stale says why it
// was not refreshed.
func (c *Client) Fresh(ctx context.Context, s Store) (cr Credentials, stale, err error) {
	cr, err = s.Load()
	if err != nil {
		return cr, nil, err
	}
	if cr.Expiry.IsZero() || cr.Expiry.Sub(c.Now()) >= RefreshBefore {
		return cr, nil, nil
	}
	if cr.RefreshToken == "" {
		if c.Now().Before(cr.Expiry) {
			return cr, nil, nil // nothing to refresh with; still valid for now
		}
		return cr, nil, errors.New("your session has expired: run `idflow login`")
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cr.RefreshToken}, "client_id": {cr.ClientID}}
	if cr.Resource != "" {
		form.Set("resource", cr.Resource)
	}
	a, err := c.postForm(ctx, cr.TokenEndpoint, form)
	if err != nil {
		if c.Now().Before(cr.Expiry) {
			return cr, err, nil
		}
		return cr, nil, fmt.Errorf("refreshing the token: %w", err)
	}
	if a.Error == "invalid_grant" {
		return cr, nil, errors.New("your session has ended (the issuer refused the refresh token): run `idflow login`")
	}
	if a.Error != "" || a.AccessToken == "" {
		return cr, nil, fmt.Errorf("refreshing the token: %s %s", a.Error, a.Description)
	}
	cr.AccessToken = a.AccessToken
	if a.RefreshToken != "" {
		cr.RefreshToken = a.RefreshToken // rotated: the old one is spent
	}
	if a.Scope != "" {
		cr.Scope = a.Scope
	}
	cr.Expiry = time.Time{}
	if d := a.expiresIn(); d > 0 {
		cr.Expiry = c.Now().Add(d).UTC()
	}
	if err := s.Save(cr); err != nil {
		return cr, nil, fmt.Errorf("storing the refreshed token: %w", err)
	}
	return cr, nil, nil
}

// ErrNoRevocation: the issuer has no revocation endpoint, so a token stays
// valid until it expires.
var ErrNoRevocation = errors.New("the issuer has no revocation endpoint; the token stays valid until it expires")

// Revoke revokes cr's refresh token at the issuer (RFC 7009), or its access
// token when it has none; 200 (with any body) is success.
func (c *Client) Revoke(ctx context.Context, cr Credentials) error {
	if cr.RevocationEndpoint == "" {
		return ErrNoRevocation
	}
	token, hint := cr.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = cr.AccessToken, "access_token"
	}
	form := url.Values{"token": {token}, "token_type_hint": {hint}, "client_id": {cr.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cr.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", cr.RevocationEndpoint, resp.StatusCode)
	}
	return nil
}
