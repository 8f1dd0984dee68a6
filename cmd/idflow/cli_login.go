package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/idflow/idflow/devidp"
)

// cli is the environment of the user-facing commands (login, whoami,
// token, logout). Tests replace the browser, the clock and the pause.
type cli struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	http           *http.Client
	// openBrowser opens a URL for the user; nil: no browser is opened.
	openBrowser func(ctx context.Context, u string) error
	// sleep pauses between device-flow polls.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

func newCLI(getenv func(string) string, stdout, stderr io.Writer) *cli {
	return &cli{getenv: getenv, stdout: stdout, stderr: stderr,
		http: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		openBrowser: systemBrowser(), sleep: sleepCtx, now: time.Now}
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

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

// discovery is the part of an issuer's metadata the CLI uses.
type discovery struct {
	Issuer              string `json:"issuer"`
	Authorization       string `json:"authorization_endpoint"`
	Token               string `json:"token_endpoint"`
	Revocation          string `json:"revocation_endpoint"`
	DeviceAuthorization string `json:"device_authorization_endpoint"`
}

func (c *cli) discover(ctx context.Context, issuer string) (discovery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return discovery{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return discovery{}, fmt.Errorf("discovery of %s: %w", issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return discovery{}, fmt.Errorf("discovery of %s: status %d", issuer, resp.StatusCode)
	}
	var d discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return discovery{}, fmt.Errorf("discovery of %s: %w", issuer, err)
	}
	if d.Token == "" {
		return discovery{}, fmt.Errorf("discovery of %s: no token_endpoint", issuer)
	}
	return d, nil
}

// tokenAnswer is a token endpoint's answer, success or error.
type tokenAnswer struct {
	AccessToken  string          `json:"access_token"`
	RefreshToken string          `json:"refresh_token"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
	Scope        string          `json:"scope"`
	Error        string          `json:"error"`
	Description  string          `json:"error_description"`
	// device authorization
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	Interval                int    `json:"interval"`
}

func (a tokenAnswer) expiresIn() time.Duration {
	n, err := strconv.ParseFloat(strings.Trim(string(a.ExpiresIn), `"`), 64)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// postForm posts form to endpoint and decodes the answer; an OAuth error
// answer comes back in Error with a nil error.
func (c *cli) postForm(ctx context.Context, endpoint string, form url.Values) (tokenAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return tokenAnswer{}, err
	}
	defer resp.Body.Close()
	var a tokenAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil {
		return tokenAnswer{}, fmt.Errorf("%s: status %d, not JSON", endpoint, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK && a.Error == "" {
		a.Error = "http_" + strconv.Itoa(resp.StatusCode)
	}
	return a, nil
}

func (c *cli) credentialsFrom(a tokenAnswer, server, issuer, clientID, resource string, d discovery) credentials {
	cr := credentials{Server: server, Issuer: issuer, ClientID: clientID, Resource: resource,
		TokenEndpoint: d.Token, RevocationEndpoint: d.Revocation,
		AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, Scope: a.Scope}
	if d := a.expiresIn(); d > 0 {
		cr.Expiry = c.now().Add(d).UTC()
	}
	return cr
}

func randomB64() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
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
	iss := strings.TrimSuffix(*issuer, "/")
	if iss == "" {
		iss = srv + devidp.Path
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	d, err := c.discover(ctx, iss)
	if err != nil {
		return err
	}
	var a tokenAnswer
	if *device {
		a, err = c.deviceLogin(ctx, d, *clientID, *scope, *resource)
	} else {
		a, err = c.loopbackLogin(ctx, d, *clientID, *scope, *resource, *noBrowser)
	}
	if err != nil {
		return err
	}
	cr := c.credentialsFrom(a, srv, iss, *clientID, *resource, d)
	if err := c.saveCredentials(cr); err != nil {
		return err
	}
	dir, _ := c.configDir()
	fmt.Fprintf(c.stderr, "Signed in with %s. Tokens are in %s (sealed, mode 0600).\n", iss, dir)
	if !cr.Expiry.IsZero() {
		fmt.Fprintf(c.stderr, "The access token expires at %s%s.\n", cr.Expiry.Local().Format(time.RFC3339),
			map[bool]string{true: " and is refreshed automatically", false: ""}[cr.RefreshToken != ""])
	}
	return nil
}

// loopbackLogin runs the authorization code flow with PKCE, receiving the
// code on http://127.0.0.1:<free port>/callback.
func (c *cli) loopbackLogin(ctx context.Context, d discovery, clientID, scope, resource string, noBrowser bool) (tokenAnswer, error) {
	if d.Authorization == "" {
		return tokenAnswer{}, errors.New("the issuer has no authorization_endpoint")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return tokenAnswer{}, fmt.Errorf("loopback listener: %w", err)
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	state, verifier := randomB64(), randomB64()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "redirect_uri": {redirect},
		"scope": {scope}, "state": {state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}}
	if resource != "" {
		q.Set("resource", resource)
	}
	authorize, err := url.Parse(d.Authorization)
	if err != nil {
		ln.Close()
		return tokenAnswer{}, fmt.Errorf("authorization_endpoint: %w", err)
	}
	aq := authorize.Query()
	for k, v := range q {
		aq[k] = v
	}
	authorize.RawQuery = aq.Encode()

	type result struct {
		code string
		err  error
	}
	results := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Query()
		if r.URL.Path != "/callback" || subtle.ConstantTimeCompare([]byte(p.Get("state")), []byte(state)) != 1 {
			// Not our redirect: answer it, keep waiting for the right one.
			http.Error(w, "unexpected request: this is the idflow login's loopback listener", http.StatusBadRequest)
			return
		}
		res := result{code: p.Get("code")}
		if e := p.Get("error"); e != "" {
			res = result{err: fmt.Errorf("sign-in refused: %s %s", e, p.Get("error_description"))}
		} else if res.code == "" {
			res = result{err: errors.New("sign-in: the redirect carries no code")}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		msg := "Signed in to idflow. You can close this tab."
		if res.err != nil {
			msg = "Sign-in failed: " + html.EscapeString(res.err.Error())
		}
		fmt.Fprintf(w, "<!doctype html><title>idflow</title><p>%s</p>\n", msg)
		select {
		case results <- res:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	fmt.Fprintf(c.stderr, "To sign in, open this URL in a browser:\n\n  %s\n\n", authorize.String())
	if !noBrowser && c.openBrowser != nil {
		if err := c.openBrowser(ctx, authorize.String()); err != nil {
			fmt.Fprintf(c.stderr, "(could not open a browser: %v)\n", err)
		}
	}
	var res result
	select {
	case res = <-results:
	case <-ctx.Done():
		return tokenAnswer{}, fmt.Errorf("sign-in did not complete: %w", ctx.Err())
	}
	if res.err != nil {
		return tokenAnswer{}, res.err
	}
	a, err := c.postForm(ctx, d.Token, url.Values{"grant_type": {"authorization_code"}, "code": {res.code},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
	if err != nil {
		return tokenAnswer{}, fmt.Errorf("token endpoint: %w", err)
	}
	if a.Error != "" || a.AccessToken == "" {
		return tokenAnswer{}, fmt.Errorf("token endpoint refused the code: %s %s", a.Error, a.Description)
	}
	return a, nil
}

// deviceLogin runs the device authorization grant (RFC 8628): it prints
// the user code and the verification URI, then polls the token endpoint
// every interval seconds, 5 more after each slow_down.
func (c *cli) deviceLogin(ctx context.Context, d discovery, clientID, scope, resource string) (tokenAnswer, error) {
	if d.DeviceAuthorization == "" {
		return tokenAnswer{}, errors.New("the issuer does not offer the device flow (no device_authorization_endpoint); sign in without --device")
	}
	form := url.Values{"client_id": {clientID}, "scope": {scope}}
	if resource != "" {
		form.Set("resource", resource)
	}
	da, err := c.postForm(ctx, d.DeviceAuthorization, form)
	if err != nil {
		return tokenAnswer{}, fmt.Errorf("device authorization: %w", err)
	}
	if da.Error != "" || da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return tokenAnswer{}, fmt.Errorf("device authorization refused: %s %s", da.Error, da.Description)
	}
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second // RFC 8628 §3.2
	}
	deadline := c.now().Add(da.expiresIn())
	fmt.Fprintf(c.stderr, "To sign in, open %s and enter the code\n\n  %s\n\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(c.stderr, "(or open %s)\n", da.VerificationURIComplete)
	}
	for {
		if err := c.sleep(ctx, interval); err != nil {
			return tokenAnswer{}, fmt.Errorf("sign-in did not complete: %w", err)
		}
		a, err := c.postForm(ctx, d.Token, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode}, "client_id": {clientID}})
		if err != nil {
			return tokenAnswer{}, fmt.Errorf("token endpoint: %w", err)
		}
		switch a.Error {
		case "":
			if a.AccessToken == "" {
				return tokenAnswer{}, errors.New("token endpoint: no access_token")
			}
			return a, nil
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second
		case "access_denied":
			return tokenAnswer{}, errors.New("sign-in was denied")
		case "expired_token":
			return tokenAnswer{}, errors.New("the code expired before sign-in completed; run `idflow login --device` again")
		default:
			return tokenAnswer{}, fmt.Errorf("token endpoint: %s %s", a.Error, a.Description)
		}
		if da.expiresIn() > 0 && c.now().After(deadline) {
			return tokenAnswer{}, errors.New("the code expired before sign-in completed; run `idflow login --device` again")
		}
	}
}
