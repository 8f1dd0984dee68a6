package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/devidp"
)

// cmdDevToken asks a running dev server's issuer for a user's access token,
// through the same authorization-code + PKCE flow a browser uses.
func cmdDevToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("IDFLOW_PUBLIC_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
		if l := getenv("IDFLOW_LISTEN"); l != "" {
			def = "http://" + l
		}
	}
	server := fs.String("server", def, "base URL of a server running with --dev")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	resource := fs.String("resource", "", "RFC 8707 resource (audience), e.g. <server>/mcp")
	// Accept the user before or after the flags.
	var login string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		login, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if login == "" && fs.NArg() > 0 {
		login = fs.Arg(0)
	}
	if _, ok := devidp.FindUser(login); !ok {
		return fmt.Errorf("usage: idflow dev-token <alice|bob|carol|admin|platform> [--server URL]")
	}
	tok, err := devToken(ctx, strings.TrimSuffix(*server, "/"), login, *ttl, *resource)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func devToken(ctx context.Context, server, login string, ttl time.Duration, resource string) (string, error) {
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	disc, err := auth.Discover(ctx, client, server+devidp.Path)
	if err != nil {
		return "", fmt.Errorf("is `idflow serve --dev` running at %s? %w", server, err)
	}
	var vb [32]byte
	_, _ = rand.Read(vb[:])
	verifier := base64.RawURLEncoding.EncodeToString(vb[:])
	sum := sha256.Sum256([]byte(verifier))
	redirect := "http://127.0.0.1/dev-token"
	form := url.Values{
		"client_id": {devidp.PublicClientID}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid profile email idflow"}, "state": {"dev-token"}, "login": {login},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"dev_ttl": {strconv.Itoa(int(ttl.Seconds()))},
	}
	if resource != "" {
		form.Set("resource", resource)
	}
	resp, err := client.PostForm(disc.AuthorizationEndpoint, form)
	if err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("authorize: no code (status %d)", resp.StatusCode)
	}
	resp, err = client.PostForm(disc.TokenEndpoint, url.Values{
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
