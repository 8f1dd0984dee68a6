package cliauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Request is what a sign-in asks an issuer for.
type Request struct {
	Issuer   string // as the person named it; stored with the tokens
	ClientID string // a public client registered at the issuer
	Scope    string
	Resource string // RFC 8707 resource (the API's audience), when the issuer needs one
}

// credentials are the tokens of a successful sign-in.
func (c *Client) credentials(a tokenAnswer, req Request, d Discovery) Credentials {
	cr := Credentials{Issuer: req.Issuer, ClientID: req.ClientID, Resource: req.Resource,
		TokenEndpoint: d.Token, RevocationEndpoint: d.Revocation,
		AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, Scope: a.Scope}
	if d := a.expiresIn(); d > 0 {
		cr.Expiry = c.Now().Add(d).UTC()
	}
	return cr
}

// LoginLoopback runs the authorization code flow with PKCE, receiving the
// code on http://127.0.0.1:<free port>/callback. show is handed the URL the
// person must open in a browser, once the listener waits for the redirect.
func (c *Client) LoginLoopback(ctx context.Context, d Discovery, req Request, show func(authorizeURL string)) (Credentials, error) {
	if d.Authorization == "" {
		return Credentials{}, errors.New("the issuer has no authorization_endpoint")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Credentials{}, fmt.Errorf("loopback listener: %w", err)
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	state, verifier := randomB64(), randomB64()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {req.ClientID}, "response_type": {"code"}, "redirect_uri": {redirect},
		"scope": {req.Scope}, "state": {state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}}
	if req.Resource != "" {
		q.Set("resource", req.Resource)
	}
	authorize, err := url.Parse(d.Authorization)
	if err != nil {
		ln.Close()
		return Credentials{}, fmt.Errorf("authorization_endpoint: %w", err)
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

	show(authorize.String())
	var res result
	select {
	case res = <-results:
	case <-ctx.Done():
		return Credentials{}, fmt.Errorf("sign-in did not complete: %w", ctx.Err())
	}
	if res.err != nil {
		return Credentials{}, res.err
	}
	a, err := c.postForm(ctx, d.Token, url.Values{"grant_type": {"authorization_code"}, "code": {res.code},
		"redirect_uri": {redirect}, "client_id": {req.ClientID}, "code_verifier": {verifier}})
	if err != nil {
		return Credentials{}, fmt.Errorf("token endpoint: %w", err)
	}
	if a.Error != "" || a.AccessToken == "" {
		return Credentials{}, fmt.Errorf("token endpoint refused the code: %s %s", a.Error, a.Description)
	}
	return c.credentials(a, req, d), nil
}

// DeviceCode is what the person enters, and where, in the device flow.
type DeviceCode struct {
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string // the URI with the code in it; may be empty
}

// LoginDevice runs the device authorization grant (RFC 8628): show is
// handed the user code and the verification URI, then the token endpoint
// is polled every interval seconds, 5 more after each slow_down.
func (c *Client) LoginDevice(ctx context.Context, d Discovery, req Request, show func(DeviceCode)) (Credentials, error) {
	if d.DeviceAuthorization == "" {
		return Credentials{}, errors.New("the issuer does not offer the device flow (no device_authorization_endpoint); sign in without --device")
	}
	form := url.Values{"client_id": {req.ClientID}, "scope": {req.Scope}}
	if req.Resource != "" {
		form.Set("resource", req.Resource)
	}
	da, err := c.postForm(ctx, d.DeviceAuthorization, form)
	if err != nil {
		return Credentials{}, fmt.Errorf("device authorization: %w", err)
	}
	if da.Error != "" || da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return Credentials{}, fmt.Errorf("device authorization refused: %s %s", da.Error, da.Description)
	}
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second // RFC 8628 §3.2
	}
	deadline := c.Now().Add(da.expiresIn())
	show(DeviceCode{UserCode: da.UserCode, VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete})
	for {
		if err := c.Sleep(ctx, interval); err != nil {
			return Credentials{}, fmt.Errorf("sign-in did not complete: %w", err)
		}
		a, err := c.postForm(ctx, d.Token, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode}, "client_id": {req.ClientID}})
		if err != nil {
			return Credentials{}, fmt.Errorf("token endpoint: %w", err)
		}
		switch a.Error {
		case "":
			if a.AccessToken == "" {
				return Credentials{}, errors.New("token endpoint: no access_token")
			}
			return c.credentials(a, req, d), nil
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second
		case "access_denied":
			return Credentials{}, errors.New("sign-in was denied")
		case "expired_token":
			return Credentials{}, errors.New("the code expired before sign-in completed; run `idflow login --device` again")
		default:
			return Credentials{}, fmt.Errorf("token endpoint: %s %s", a.Error, a.Description)
		}
		if da.expiresIn() > 0 && c.Now().After(deadline) {
			return Credentials{}, errors.New("the code expired before sign-in completed; run `idflow login --device` again")
		}
	}
}
