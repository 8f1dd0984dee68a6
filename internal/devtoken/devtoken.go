// Package devtoken gets users' access tokens from the dev issuer of
// `idflow serve --dev`: for `idflow dev-token`, the tests and the load
// tools under bench/.
package devtoken

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/devidp"
)

// Get returns login's access token from the dev issuer at
// <server>/dev/idp through the authorization-code + PKCE flow, as
// a browser would; client names the caller in the redirect; resource, when
// set, is the RFC 8707 resource (audience) asked for.
func Get(ctx context.Context, server, login, client string, ttl time.Duration, resource string) (string, error) {
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	disc, err := auth.Discover(ctx, hc, server+devidp.Path)
	if err != nil {
		return "", fmt.Errorf("is `idflow serve --dev` running at %s? %w", server, err)
	}
	var vb [32]byte
	_, _ = rand.Read(vb[:])
	verifier := base64.RawURLEncoding.EncodeToString(vb[:])
	sum := sha256.Sum256([]byte(verifier))
	redirect := "http://127.0.0.1/" + client
	form := url.Values{
		"client_id": {devidp.PublicClientID}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid profile email idflow"}, "state": {client}, "login": {login},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"dev_ttl": {strconv.Itoa(int(ttl.Seconds()))},
	}
	if resource != "" {
		form.Set("resource", resource)
	}
	resp, err := hc.PostForm(disc.AuthorizationEndpoint, form)
	if err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("authorize: no code (status %d)", resp.StatusCode)
	}
	resp, err = hc.PostForm(disc.TokenEndpoint, url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {devidp.PublicClientID},
		"redirect_uri": {redirect}, "code_verifier": {verifier},
	})
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	if out.AccessToken == "" {
		return "", errors.New("token: " + out.Error)
	}
	return out.AccessToken, nil
}
