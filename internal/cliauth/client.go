// Package cliauth is the command line's OAuth client. It signs a person in
// as a native app — authorization code + PKCE on a loopback redirect
// (RFC 8252), or the device authorization grant (RFC 8628) — refreshes the
// access token with rotation, revokes at the issuer (RFC 7009), and keeps
// the tokens in a sealed file (Store). It prints nothing: what a person
// must see (a URL to open, a code to enter) is handed to the caller.
package cliauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks OAuth to an issuer. Tests replace the clock and the pause.
type Client struct {
	HTTP *http.Client
	Now  func() time.Time
	// Sleep pauses between device-flow polls.
	Sleep func(ctx context.Context, d time.Duration) error
}

// NewClient returns a Client on the real clock whose HTTP client follows no
// redirects (an issuer's answer is read as it comes).
func NewClient() *Client {
	return &Client{
		HTTP: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		Now: time.Now, Sleep: sleepCtx,
	}
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

// Discovery is the part of an issuer's metadata the CLI uses.
type Discovery struct {
	Issuer              string `json:"issuer"`
	Authorization       string `json:"authorization_endpoint"`
	Token               string `json:"token_endpoint"`
	Revocation          string `json:"revocation_endpoint"`
	DeviceAuthorization string `json:"device_authorization_endpoint"`
}

// Discover reads issuer's /.well-known/openid-configuration.
func (c *Client) Discover(ctx context.Context, issuer string) (Discovery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return Discovery{}, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Discovery{}, fmt.Errorf("discovery of %s: %w", issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Discovery{}, fmt.Errorf("discovery of %s: status %d", issuer, resp.StatusCode)
	}
	var d Discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return Discovery{}, fmt.Errorf("discovery of %s: %w", issuer, err)
	}
	if d.Token == "" {
		return Discovery{}, fmt.Errorf("discovery of %s: no token_endpoint", issuer)
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
func (c *Client) postForm(ctx context.Context, endpoint string, form url.Values) (tokenAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
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

func randomB64() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
