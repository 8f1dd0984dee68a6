package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// cliRefreshBefore: a stored access token with less left is refreshed first.
const cliRefreshBefore = 5 * time.Minute

// fresh returns the stored credentials with an access token that has at
// least cliRefreshBefore left, refreshing (and storing the rotated refresh
// token) when needed.
func (c *cli) fresh(ctx context.Context) (credentials, error) {
	cr, err := c.loadCredentials()
	if err != nil {
		return cr, err
	}
	if cr.Expiry.IsZero() || cr.Expiry.Sub(c.now()) >= cliRefreshBefore {
		return cr, nil
	}
	if cr.RefreshToken == "" {
		if c.now().Before(cr.Expiry) {
			return cr, nil // nothing to refresh with; still valid for now
		}
		return cr, errors.New("your session has expired: run `idflow login`")
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cr.RefreshToken}, "client_id": {cr.ClientID}}
	if cr.Resource != "" {
		form.Set("resource", cr.Resource)
	}
	a, err := c.postForm(ctx, cr.TokenEndpoint, form)
	if err != nil {
		if c.now().Before(cr.Expiry) {
			fmt.Fprintf(c.stderr, "warning: could not refresh the token (%v); using the current one\n", err)
			return cr, nil
		}
		return cr, fmt.Errorf("refreshing the token: %w", err)
	}
	if a.Error == "invalid_grant" {
		return cr, errors.New("your session has ended (the issuer refused the refresh token): run `idflow login`")
	}
	if a.Error != "" || a.AccessToken == "" {
		return cr, fmt.Errorf("refreshing the token: %s %s", a.Error, a.Description)
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
		cr.Expiry = c.now().Add(d).UTC()
	}
	if err := c.saveCredentials(cr); err != nil {
		return cr, fmt.Errorf("storing the refreshed token: %w", err)
	}
	return cr, nil
}

func (c *cli) parseNoArgs(name string, args []string, extra func(*flag.FlagSet)) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("usage: idflow %s", name)
	}
	return fs, nil
}

// token prints a fresh access token, for curl and scripts.
func (c *cli) token(ctx context.Context, args []string) error {
	if _, err := c.parseNoArgs("token", args, nil); err != nil {
		return ignoreHelp(err)
	}
	cr, err := c.fresh(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, cr.AccessToken)
	return nil
}

// whoami asks idflow who the stored token belongs to (GET /api/v1/me).
func (c *cli) whoami(ctx context.Context, args []string) error {
	var server *string
	if _, err := c.parseNoArgs("whoami", args, func(fs *flag.FlagSet) {
		server = fs.String("server", "", "idflow's base URL (default: the one logged in to)")
	}); err != nil {
		return ignoreHelp(err)
	}
	cr, err := c.fresh(ctx)
	if err != nil {
		return err
	}
	base := cr.Server
	if *server != "" {
		base = strings.TrimSuffix(*server, "/")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/me", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cr.AccessToken)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s/api/v1/me: %w", base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(body, &p)
		return fmt.Errorf("GET %s/api/v1/me: %d %s", base, resp.StatusCode, p.Detail)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return fmt.Errorf("GET %s/api/v1/me: %w", base, err)
	}
	fmt.Fprintln(c.stdout, strings.TrimSpace(out.String()))
	return nil
}

// logout revokes the refresh token at the issuer (RFC 7009, best effort)
// and deletes the stored credentials.
func (c *cli) logout(ctx context.Context, args []string) error {
	if _, err := c.parseNoArgs("logout", args, nil); err != nil {
		return ignoreHelp(err)
	}
	cr, err := c.loadCredentials()
	if errors.Is(err, errNotLoggedIn) {
		fmt.Fprintln(c.stderr, "Not logged in.")
		return nil
	}
	if err != nil {
		// A credentials file that no longer opens is deleted all the same.
		fmt.Fprintf(c.stderr, "warning: %v\n", err)
		return c.deleteCredentials()
	}
	token, hint := cr.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = cr.AccessToken, "access_token"
	}
	switch {
	case cr.RevocationEndpoint == "":
		fmt.Fprintln(c.stderr, "warning: the issuer has no revocation endpoint; the token stays valid until it expires")
	default:
		if err := c.revoke(ctx, cr.RevocationEndpoint, url.Values{"token": {token}, "token_type_hint": {hint},
			"client_id": {cr.ClientID}}); err != nil {
			fmt.Fprintf(c.stderr, "warning: revocation failed: %v\n", err)
		}
	}
	if err := c.deleteCredentials(); err != nil {
		return err
	}
	fmt.Fprintln(c.stderr, "Logged out.")
	return nil
}

func ignoreHelp(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// revoke posts an RFC 7009 revocation; 200 (with any body) is success.
func (c *cli) revoke(ctx context.Context, endpoint string, form url.Values) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", endpoint, resp.StatusCode)
	}
	return nil
}
