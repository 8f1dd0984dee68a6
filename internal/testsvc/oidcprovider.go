package testsvc

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Clients of testdata/oidcprovider/server.js (test-only credentials).
const (
	OIDCPublicClientID      = "idflow-test-public"
	OIDCWebClientID         = "idflow-test-web"
	OIDCWebClientSecret     = "idflow-test-web-secret"
	OIDCServiceClientID     = "idflow-test-service"
	OIDCServiceClientSecret = "idflow-test-service-secret"
	// OIDCDefaultRedirectURI is registered for the public and web clients.
	OIDCDefaultRedirectURI = "http://127.0.0.1/callback"
)

// OIDCProviderOptions configures StartOIDCProvider.
type OIDCProviderOptions struct {
	// Audiences are the resource indicators the provider issues JWT access
	// tokens for; the first is the default resource. At least one.
	Audiences []string
	// RedirectURIs are registered for the public and web clients, besides
	// OIDCDefaultRedirectURI.
	RedirectURIs []string
}

// OIDCProvider is a running oidc-provider (panva), an OpenID provider that
// shares no code with idflow.
type OIDCProvider struct {
	// Issuer is the provider's issuer URL, http://127.0.0.1:<port>.
	Issuer    string
	Audiences []string
	disc      oidcDiscovery
}

type oidcDiscovery struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

// Tokens is a token endpoint answer.
type Tokens struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// StartOIDCProvider installs (NPMInstall) and starts
// testdata/oidcprovider/server.js on a free port. Without node or npm the
// test ends through Unavailable.
func StartOIDCProvider(t testing.TB, opts OIDCProviderOptions) *OIDCProvider {
	t.Helper()
	if len(opts.Audiences) == 0 {
		t.Fatalf("StartOIDCProvider: at least one audience is required")
	}
	node := Node(t)
	if major, err := nodeMajor(node); err != nil {
		Unavailable(t, "%s does not run: %v", node, err)
	} else if major < 20 {
		Unavailable(t, "oidc-provider 9 needs Node.js 20 or later; %s is version %d", node, major)
	}
	dir := RepoDir(t, "testdata/oidcprovider")
	NPMInstall(t, dir)

	args := []string{dir + "/server.js", "--port", "0"}
	for _, a := range opts.Audiences {
		args = append(args, "--audience", a)
	}
	for _, r := range opts.RedirectURIs {
		args = append(args, "--redirect-uri", r)
	}
	// node resolves oidc-provider next to the script; its working
	// directory is a scratch one.
	cmd := exec.Command(node, args...)
	cmd.Dir = t.TempDir()
	stdout, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("oidc-provider: %v", err)
	}
	cmd.Stdout = pw
	p, err := startProcess(t, "oidc-provider", cmd, syscall.SIGTERM, nil)
	pw.Close() // the child holds its own copy
	if err != nil {
		stdout.Close()
		t.Fatalf("oidc-provider: %v", err)
	}
	// The server chooses its port (0) and announces it: no port race.
	lines := make(chan string, 1)
	go func() {
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		announced := false
		for sc.Scan() {
			line := sc.Text()
			if !announced && strings.HasPrefix(line, "LISTENING ") {
				announced = true
				lines <- strings.TrimPrefix(line, "LISTENING ")
				continue
			}
			fmt.Fprintln(p.output, line)
		}
	}()
	var issuer string
	select {
	case issuer = <-lines:
	case <-p.done:
		t.Fatalf("oidc-provider exited before it was ready (%v): %s", p.err, lastLines(p.output.String(), 20))
	case <-time.After(startTimeout):
		t.Fatalf("oidc-provider did not announce itself within %s: %s", startTimeout, lastLines(p.output.String(), 20))
	}
	op := &OIDCProvider{Issuer: issuer, Audiences: append([]string{}, opts.Audiences...)}
	err = p.waitReady(func() error {
		resp, err := http.Get(issuer + "/.well-known/openid-configuration")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("discovery: status %d", resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(&op.disc)
	})
	if err != nil {
		t.Fatalf("oidc-provider: %v", err)
	}
	if op.disc.Issuer != issuer {
		t.Fatalf("oidc-provider: discovery names issuer %q, want %q", op.disc.Issuer, issuer)
	}
	return op
}

// JWKSURI is the provider's jwks_uri.
func (op *OIDCProvider) JWKSURI() string { return op.disc.JWKSURI }

// TokenEndpoint is the provider's token endpoint.
func (op *OIDCProvider) TokenEndpoint() string { return op.disc.TokenEndpoint }

// AppToken obtains an app-only access token for resource through
// client_credentials with the service client.
func (op *OIDCProvider) AppToken(t testing.TB, resource string) Tokens {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {"api"}}
	req, err := http.NewRequest(http.MethodPost, op.disc.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(OIDCServiceClientID, OIDCServiceClientSecret)
	tok, err := tokenRequest(http.DefaultClient, req)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	return tok
}

// UserToken signs in as account (any id; the dev login form takes any
// password) and returns the tokens of an authorization code + PKCE flow of
// the public client for resource, scripted over HTTP the way a browser
// walks it: the authorization endpoint, the login form, the consent form,
// the redirect with the code, the token endpoint.
func (op *OIDCProvider) UserToken(t testing.TB, account, resource string) Tokens {
	t.Helper()
	tok, err := op.userToken(account, resource)
	if err != nil {
		t.Fatalf("authorization code flow for %s: %v", account, err)
	}
	return tok
}

func (op *OIDCProvider) userToken(account, resource string) (Tokens, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return Tokens{}, err
	}
	client := &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	verifier := randomString()
	challenge := sha256.Sum256([]byte(verifier))
	state, nonce := randomString(), randomString()
	q := url.Values{
		"client_id": {OIDCPublicClientID}, "response_type": {"code"}, "redirect_uri": {OIDCDefaultRedirectURI},
		"scope": {"openid email profile tenant api"}, "state": {state}, "nonce": {nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(challenge[:])}, "code_challenge_method": {"S256"},
		"resource": {resource},
	}
	next, err := http.NewRequest(http.MethodGet, op.disc.AuthorizationEndpoint+"?"+q.Encode(), nil)
	if err != nil {
		return Tokens{}, err
	}
	var code string
	for step := 0; step < 20 && code == ""; step++ {
		resp, err := client.Do(next)
		if err != nil {
			return Tokens{}, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				return Tokens{}, fmt.Errorf("redirect: %w", err)
			}
			if strings.HasPrefix(loc.String(), OIDCDefaultRedirectURI) {
				lq := loc.Query()
				if e := lq.Get("error"); e != "" {
					return Tokens{}, fmt.Errorf("authorization error %s: %s", e, lq.Get("error_description"))
				}
				if lq.Get("state") != state {
					return Tokens{}, errors.New("state mismatch in the redirect")
				}
				if iss := lq.Get("iss"); iss != "" && iss != op.Issuer {
					return Tokens{}, fmt.Errorf("iss %q in the redirect", iss)
				}
				if code = lq.Get("code"); code == "" {
					return Tokens{}, errors.New("redirect without a code")
				}
				continue
			}
			if next, err = http.NewRequest(http.MethodGet, loc.String(), nil); err != nil {
				return Tokens{}, err
			}
		case resp.StatusCode == http.StatusOK:
			// A devInteractions page: the login form, then the consent form.
			action, fields, err := parseForm(string(body))
			if err != nil {
				return Tokens{}, err
			}
			switch fields.Get("prompt") {
			case "login":
				fields.Set("login", account)
				fields.Set("password", "any password")
			case "consent":
			default:
				return Tokens{}, fmt.Errorf("unexpected interaction prompt %q", fields.Get("prompt"))
			}
			target, err := resp.Request.URL.Parse(action)
			if err != nil {
				return Tokens{}, err
			}
			if next, err = http.NewRequest(http.MethodPost, target.String(), strings.NewReader(fields.Encode())); err != nil {
				return Tokens{}, err
			}
			next.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			return Tokens{}, fmt.Errorf("%s %s: status %d: %s", next.Method, next.URL.Path, resp.StatusCode, lastLines(string(body), 5))
		}
	}
	if code == "" {
		return Tokens{}, errors.New("no code after 20 steps")
	}
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "client_id": {OIDCPublicClientID},
		"redirect_uri": {OIDCDefaultRedirectURI}, "code_verifier": {verifier}, "resource": {resource},
	}
	req, err := http.NewRequest(http.MethodPost, op.disc.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return Tokens{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return tokenRequest(client, req)
}

func tokenRequest(client *http.Client, req *http.Request) (Tokens, error) {
	resp, err := client.Do(req)
	if err != nil {
		return Tokens{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &e)
		return Tokens{}, fmt.Errorf("token endpoint: status %d: %s %s", resp.StatusCode, e.Error, e.Description)
	}
	var tok Tokens
	if err := json.Unmarshal(body, &tok); err != nil {
		return Tokens{}, fmt.Errorf("token endpoint: %w", err)
	}
	if tok.AccessToken == "" {
		return Tokens{}, errors.New("token endpoint: no access_token")
	}
	return tok, nil
}

var (
	formRe   = regexp.MustCompile(`(?is)<form[^>]*\baction="([^"]*)"[^>]*>(.*?)</form>`)
	inputRe  = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	attrName = regexp.MustCompile(`(?i)\bname="([^"]*)"`)
	attrVal  = regexp.MustCompile(`(?i)\bvalue="([^"]*)"`)
)

// parseForm returns the action and the named inputs of the first form with
// a prompt field in page.
func parseForm(page string) (string, url.Values, error) {
	for _, m := range formRe.FindAllStringSubmatch(page, -1) {
		fields := url.Values{}
		for _, in := range inputRe.FindAllString(m[2], -1) {
			n := attrName.FindStringSubmatch(in)
			if n == nil {
				continue
			}
			v := ""
			if vm := attrVal.FindStringSubmatch(in); vm != nil {
				v = html.UnescapeString(vm[1])
			}
			fields.Set(html.UnescapeString(n[1]), v)
		}
		if fields.Get("prompt") != "" {
			return html.UnescapeString(m[1]), fields, nil
		}
	}
	return "", nil, errors.New("no interaction form in the page")
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var nodeMajors sync.Map // node path → major version

// nodeMajor returns the major version of the node binary at path.
func nodeMajor(path string) (int, error) {
	if v, ok := nodeMajors.Load(path); ok {
		return v.(int), nil
	}
	out, err := exec.Command(path, "-p", "process.versions.node").Output()
	if err != nil {
		return 0, err
	}
	major, err := strconv.Atoi(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0])
	if err != nil {
		return 0, fmt.Errorf("node version %q: %w", out, err)
	}
	nodeMajors.Store(path, major)
	return major, nil
}
