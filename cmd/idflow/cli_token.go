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
	"strings"

	"github.com/idflow/idflow/internal/cliauth"
)

// fresh returns the stored credentials with an access token that has at
// least cliauth.RefreshBefore left, saying so when a refresh failed but
// the current token still serves.
func (c *cli) fresh(ctx context.Context) (cliauth.Credentials, error) {
	store, err := c.store()
	if err != nil {
		return cliauth.Credentials{}, err
	}
	cr, stale, err := c.oauth.Fresh(ctx, store)
	if stale != nil {
		fmt.Fprintf(c.stderr, "warning: could not refresh the token (%v); using the current one\n", stale)
	}
	return cr, err
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
	resp, err := c.oauth.HTTP.Do(req)
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
	store, err := c.store()
	if err != nil {
		return err
	}
	cr, err := store.Load()
	if errors.Is(err, cliauth.ErrNotLoggedIn) {
		fmt.Fprintln(c.stderr, "Not logged in.")
		return nil
	}
	if err != nil {
		// A credentials file that no longer opens is deleted all the same.
		fmt.Fprintf(c.stderr, "warning: %v\n", err)
		return store.Delete()
	}
	switch err := c.oauth.Revoke(ctx, cr); {
	case errors.Is(err, cliauth.ErrNoRevocation):
		fmt.Fprintf(c.stderr, "warning: %v\n", err)
	case err != nil:
		fmt.Fprintf(c.stderr, "warning: revocation failed: %v\n", err)
	}
	if err := store.Delete(); err != nil {
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
