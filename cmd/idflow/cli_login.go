package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/internal/cliauth"
)

// cli is the environment of the user-facing commands (login, whoami,
// token, logout): their flags and what they print. The OAuth client and the
// credentials file are package cliauth's. Tests replace the browser, and
// the OAuth client's clock and pause.
type cli struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	oauth          *cliauth.Client
	// openBrowser opens a URL for the user; nil: no browser is opened.
	openBrowser func(ctx context.Context, u string) error
}

func newCLI(getenv func(string) string, stdout, stderr io.Writer) *cli {
	return &cli{getenv: getenv, stdout: stdout, stderr: stderr, oauth: cliauth.NewClient(), openBrowser: systemBrowser()}
}

// cmd runs one of the CLI's commands.
func (c *cli) cmd(ctx context.Context, name string, args []string) error {
	switch name {
	case "login":
		return c.login(ctx, args)
	case "whoami":
		return c.whoami(ctx, args)
	case "token":
		return c.token(ctx, args)
	case "logout":
		return c.logout(ctx, args)
	}
	return fmt.Errorf("unknown command %q", name)
}

// systemBrowser returns an opener using xdg-open (or macOS open) when one is
// installed, else nil: the URL is printed either way.
func systemBrowser() func(ctx context.Context, u string) error {
	for _, name := range []string{"xdg-open", "open"} {
		if path, err := exec.LookPath(name); err == nil {
			return func(ctx context.Context, u string) error {
				cmd := exec.CommandContext(ctx, path, u)
				if err := cmd.Start(); err != nil {
					return err
				}
				go func() { _ = cmd.Wait() }()
				return nil
			}
		}
	}
	return nil
}

// defaultServer is idflow's base URL: IDFLOW_PUBLIC_URL, else
// http://<IDFLOW_LISTEN>, else http://127.0.0.1:8080.
func (c *cli) defaultServer() string {
	if u := c.getenv("IDFLOW_PUBLIC_URL"); u != "" {
		return strings.TrimSuffix(u, "/")
	}
	if l := c.getenv("IDFLOW_LISTEN"); l != "" {
		return "http://" + l
	}
	return "http://127.0.0.1:8080"
}

// store is the credentials file, in $IDFLOW_CONFIG_DIR or
// <user config dir>/idflow.
func (c *cli) store() (cliauth.Store, error) {
	if d := c.getenv("IDFLOW_CONFIG_DIR"); d != "" {
		return cliauth.Store{Dir: d}, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return cliauth.Store{}, fmt.Errorf("no config directory (set IDFLOW_CONFIG_DIR): %w", err)
	}
	return cliauth.Store{Dir: filepath.Join(d, "idflow")}, nil
}

const loginUsage = `usage: idflow login [--server URL] [--issuer URL] [--client-id ID] [--scope S] [--resource URI] [--device] [--no-browser]`

// login signs in: authorization code + PKCE on a loopback redirect
// (RFC 8252), or the device authorization grant (RFC 8628) with --device.
func (c *cli) login(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	server := fs.String("server", c.defaultServer(), "idflow's base URL")
	issuer := fs.String("issuer", "", "OpenID issuer (default: the dev issuer, <server>/dev/idp)")
	clientID := fs.String("client-id", devidp.PublicClientID, "public client id registered at the issuer")
	scope := fs.String("scope", "openid profile email offline_access", "scopes to ask for")
	resource := fs.String("resource", "", "RFC 8707 resource (the API's audience), when the issuer needs one")
	device := fs.Bool("device", false, "use the device authorization grant (no browser on this machine)")
	noBrowser := fs.Bool("no-browser", false, "print the sign-in URL only; do not open a browser")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the sign-in")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return errors.New(loginUsage)
	}
	srv := strings.TrimSuffix(*server, "/")
	req := cliauth.Request{Issuer: strings.TrimSuffix(*issuer, "/"), ClientID: *clientID, Scope: *scope, Resource: *resource}
	if req.Issuer == "" {
		req.Issuer = srv + devidp.Path
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	d, err := c.oauth.Discover(ctx, req.Issuer)
	if err != nil {
		return err
	}
	var cr cliauth.Credentials
	if *device {
		cr, err = c.oauth.LoginDevice(ctx, d, req, func(dc cliauth.DeviceCode) {
			fmt.Fprintf(c.stderr, "To sign in, open %s and enter the code\n\n  %s\n\n", dc.VerificationURI, dc.UserCode)
			if dc.VerificationURIComplete != "" {
				fmt.Fprintf(c.stderr, "(or open %s)\n", dc.VerificationURIComplete)
			}
		})
	} else {
		cr, err = c.oauth.LoginLoopback(ctx, d, req, func(u string) {
			fmt.Fprintf(c.stderr, "To sign in, open this URL in a browser:\n\n  %s\n\n", u)
			if !*noBrowser && c.openBrowser != nil {
				if err := c.openBrowser(ctx, u); err != nil {
					fmt.Fprintf(c.stderr, "(could not open a browser: %v)\n", err)
				}
			}
		})
	}
	if err != nil {
		return err
	}
	cr.Server = srv
	store, err := c.store()
	if err != nil {
		return err
	}
	if err := store.Save(cr); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Signed in with %s. Tokens are in %s (sealed, mode 0600).\n", req.Issuer, store.Dir)
	if !cr.Expiry.IsZero() {
		fmt.Fprintf(c.stderr, "The access token expires at %s%s.\n", cr.Expiry.Local().Format(time.RFC3339),
			map[bool]string{true: " and is refreshed automatically", false: ""}[cr.RefreshToken != ""])
	}
	return nil
}
